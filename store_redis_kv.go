package tokenauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The KV of a Redis store, under the realm's prefix (so in its Cluster
// hash slot):
//
//	kv:<key>               string with the Temp value, expiring with it
//	rec:<kind>:<owner>     hash: record id -> value
func (r *redisStore) tempKey(key string) string { return r.prefix + "kv:" + key }
func (r *redisStore) recordsKey(kind, owner string) string {
	return r.prefix + "rec:" + kind + ":" + owner
}

func (r *redisStore) PutTemp(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return r.check(r.client.Set(ctx, r.tempKey(key), value, ttl).Err())
}

func (r *redisStore) GetTemp(ctx context.Context, key string) ([]byte, bool, error) {
	return r.foundValue(r.client.Get(ctx, r.tempKey(key)).Bytes())
}

func (r *redisStore) TakeTemp(ctx context.Context, key string) ([]byte, bool, error) {
	return r.foundValue(r.client.GetDel(ctx, r.tempKey(key)).Bytes())
}

// foundValue turns a GET-like answer into (value, found, err).
func (r *redisStore) foundValue(value []byte, err error) ([]byte, bool, error) {
	if errors.Is(err, redis.Nil) {
		r.check(nil) // Redis answered: note that it is reachable
		return nil, false, nil
	}
	if err = r.check(err); err != nil {
		return nil, false, err
	}
	return value, true, nil
}

func (r *redisStore) ClaimTemp(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	first, err := r.client.SetNX(ctx, r.tempKey(key), "", ttl).Result()
	return first, r.check(err)
}

func (r *redisStore) PutRecord(ctx context.Context, kind, owner, id string, value []byte) error {
	return r.check(r.client.HSet(ctx, r.recordsKey(kind, owner), id, value).Err())
}

func (r *redisStore) Records(ctx context.Context, kind, owner string) (map[string][]byte, error) {
	fields, err := r.client.HGetAll(ctx, r.recordsKey(kind, owner)).Result()
	if err = r.check(err); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(fields))
	for id, v := range fields {
		out[id] = []byte(v)
	}
	return out, nil
}

func (r *redisStore) DeleteRecord(ctx context.Context, kind, owner, id string) error {
	return r.check(r.client.HDel(ctx, r.recordsKey(kind, owner), id).Err())
}

func (r *redisStore) DeleteRecords(ctx context.Context, kind, owner string) error {
	return r.check(r.client.Del(ctx, r.recordsKey(kind, owner)).Err())
}

// A session's SignIn is one hash field, "signin", holding its JSON ("" for
// none), so that Update can compare and swap it as a unit.
func encodeSignIn(s SignIn) string {
	if s.isZero() {
		return ""
	}
	data, _ := json.Marshal(s) // strings, a slice and a time: cannot fail
	return string(data)
}

func decodeSignIn(field string) (s SignIn, err error) {
	if field == "" {
		return s, nil
	}
	err = json.Unmarshal([]byte(field), &s)
	return s, err
}

// updateAttempts bounds the compare-and-swap loop of Update: only
// concurrent updates of one session make it go round.
const updateAttempts = 5

func (r *redisStore) Update(ctx context.Context, sid string, change func(*SignIn) error) (Session, error) {
	for range updateAttempts {
		s, err := r.Get(ctx, sid)
		if err != nil {
			return Session{}, err
		}
		before := encodeSignIn(s.SignIn)
		now := time.Now()
		if err := updateSignIn(&s, now, change); err != nil {
			return Session{}, err
		}
		res, err := updateSignInScript.Run(ctx, r.client, []string{r.prefix},
			sid, before, encodeSignIn(s.SignIn), encodeTime(now)).Int()
		if err = r.check(err); err != nil {
			return Session{}, err
		}
		switch res {
		case 1:
			return s, nil
		case -1:
			return Session{}, ErrSessionNotFound
		}
	}
	return Session{}, fmt.Errorf("%w: session %q kept changing during an update", ErrStoreUnavailable, sid)
}
