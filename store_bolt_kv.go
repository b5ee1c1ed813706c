package tokenauth

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The KV of a bolt store lives in two more buckets under the realm's:
//
//	temp/<key>                 -> 8 bytes expiry (Unix ns, big endian) + value
//	records/<kind>\x00<owner>  -> bucket of <id> -> value
var (
	bucketTemp    = []byte("temp")
	bucketRecords = []byte("records")
)

// kvBuckets returns the realm's temp and records buckets, creating them
// in a writable transaction (databases made before the KV existed lack them).
func (b *boltStore) kvBuckets(tx *bolt.Tx) (temp, records *bolt.Bucket, err error) {
	root := tx.Bucket(b.realm)
	if !tx.Writable() {
		return root.Bucket(bucketTemp), root.Bucket(bucketRecords), nil
	}
	if temp, err = root.CreateBucketIfNotExists(bucketTemp); err != nil {
		return nil, nil, err
	}
	records, err = root.CreateBucketIfNotExists(bucketRecords)
	return temp, records, err
}

func encodeTemp(value []byte, expires time.Time) []byte {
	out := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(out, uint64(expires.UnixNano()))
	copy(out[8:], value)
	return out
}

// decodeTemp returns a stored Temp entry; a malformed one counts as expired.
func decodeTemp(data []byte) tempEntry {
	if len(data) < 8 {
		return tempEntry{}
	}
	return tempEntry{
		value:   bytes.Clone(data[8:]),
		expires: time.Unix(0, int64(binary.BigEndian.Uint64(data))),
	}
}

func (b *boltStore) PutTemp(_ context.Context, key string, value []byte, ttl time.Duration) error {
	return unavailable(b.commit.do(func(tx *bolt.Tx) error {
		temp, _, err := b.kvBuckets(tx)
		if err != nil {
			return err
		}
		return temp.Put([]byte(key), encodeTemp(value, time.Now().Add(ttl)))
	}))
}

func (b *boltStore) GetTemp(_ context.Context, key string) (value []byte, found bool, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		temp, _, _ := b.kvBuckets(tx)
		if temp == nil {
			return nil
		}
		if data := temp.Get([]byte(key)); data != nil {
			e := decodeTemp(data)
			value, found = e.value, e.live(time.Now())
		}
		return nil
	})
	if !found {
		value = nil
	}
	return value, found, unavailable(err)
}

func (b *boltStore) TakeTemp(_ context.Context, key string) (value []byte, found bool, err error) {
	// The function may run twice (group commit retries): it recomputes
	// what it returns.
	err = b.commit.do(func(tx *bolt.Tx) error {
		value, found = nil, false
		temp, _, err := b.kvBuckets(tx)
		if err != nil {
			return err
		}
		data := temp.Get([]byte(key))
		if data == nil {
			return nil
		}
		e := decodeTemp(data)
		if e.live(time.Now()) {
			value, found = e.value, true
		}
		return temp.Delete([]byte(key))
	})
	if err != nil {
		return nil, false, unavailable(err)
	}
	return value, found, nil
}

func (b *boltStore) ClaimTemp(_ context.Context, key string, ttl time.Duration) (first bool, err error) {
	err = b.commit.do(func(tx *bolt.Tx) error {
		first = false
		temp, _, err := b.kvBuckets(tx)
		if err != nil {
			return err
		}
		now := time.Now()
		if data := temp.Get([]byte(key)); data != nil && decodeTemp(data).live(now) {
			return nil
		}
		first = true
		return temp.Put([]byte(key), encodeTemp(nil, now.Add(ttl)))
	})
	if err != nil {
		return false, unavailable(err)
	}
	return first, nil
}

// recordBucketName names owner's records of kind; NUL cannot appear in
// either (callers use ids and names), so the pair is unambiguous.
func recordBucketName(kind, owner string) []byte { return []byte(kind + "\x00" + owner) }

func (b *boltStore) PutRecord(_ context.Context, kind, owner, id string, value []byte) error {
	return unavailable(b.commit.do(func(tx *bolt.Tx) error {
		_, records, err := b.kvBuckets(tx)
		if err != nil {
			return err
		}
		bucket, err := records.CreateBucketIfNotExists(recordBucketName(kind, owner))
		if err != nil {
			return err
		}
		return bucket.Put([]byte(id), value)
	}))
}

func (b *boltStore) Records(_ context.Context, kind, owner string) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := b.db.View(func(tx *bolt.Tx) error {
		_, records, _ := b.kvBuckets(tx)
		if records == nil {
			return nil
		}
		bucket := records.Bucket(recordBucketName(kind, owner))
		if bucket == nil {
			return nil
		}
		return bucket.ForEach(func(id, value []byte) error {
			out[string(id)] = bytes.Clone(value)
			return nil
		})
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

func (b *boltStore) DeleteRecord(_ context.Context, kind, owner, id string) error {
	return unavailable(b.commit.do(func(tx *bolt.Tx) error {
		_, records, err := b.kvBuckets(tx)
		if err != nil {
			return err
		}
		if bucket := records.Bucket(recordBucketName(kind, owner)); bucket != nil {
			return bucket.Delete([]byte(id))
		}
		return nil
	}))
}

func (b *boltStore) DeleteRecords(_ context.Context, kind, owner string) error {
	return unavailable(b.commit.do(func(tx *bolt.Tx) error {
		_, records, err := b.kvBuckets(tx)
		if err != nil {
			return err
		}
		if records.Bucket(recordBucketName(kind, owner)) == nil {
			return nil
		}
		return records.DeleteBucket(recordBucketName(kind, owner))
	}))
}

// purgeTemp deletes expired Temp entries.
func (b *boltStore) purgeTemp(tx *bolt.Tx, now time.Time) error {
	temp, _, err := b.kvBuckets(tx)
	if err != nil {
		return err
	}
	var dead [][]byte
	_ = temp.ForEach(func(key, data []byte) error {
		if !decodeTemp(data).live(now) {
			dead = append(dead, bytes.Clone(key))
		}
		return nil
	})
	for _, key := range dead {
		if err := temp.Delete(key); err != nil {
			return err
		}
	}
	return nil
}
