package tokenauth

import (
	"bytes"
	"context"
	"sync"
	"time"
)

// KV is the realm's small record store, kept in the same backend as its
// sessions (memory, the bolt file, Redis) so that every instance sharing
// the store sees the same records. The new sign-in capabilities keep their
// state here: single-use challenges, states and codes (the Temp calls) and
// lasting per-user records such as passkeys (the Record calls).
//
// Errors of the backend itself wrap ErrStoreUnavailable (answered 503).
// Callers namespace keys and kinds with their capability's name, e.g.
// "dpop:jti:<jti>" or kind "passkey".
type KV interface {
	// PutTemp stores value under key for ttl (> 0), replacing any earlier value.
	PutTemp(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// GetTemp returns the value under key without consuming it.
	GetTemp(ctx context.Context, key string) (value []byte, found bool, err error)
	// TakeTemp returns the value under key and deletes it in one atomic
	// step: of two concurrent calls (on any instances) at most one finds
	// it. found is false when the key is absent or expired.
	TakeTemp(ctx context.Context, key string) (value []byte, found bool, err error)
	// ClaimTemp records key for ttl unless it is already recorded; first
	// reports whether this call recorded it. For replay caches.
	ClaimTemp(ctx context.Context, key string, ttl time.Duration) (first bool, err error)

	// PutRecord stores a lasting record (no expiry) id of kind for owner,
	// replacing any earlier one with that id.
	PutRecord(ctx context.Context, kind, owner, id string, value []byte) error
	// Records returns owner's records of kind, by id (an empty map when none).
	Records(ctx context.Context, kind, owner string) (map[string][]byte, error)
	// DeleteRecord removes one record; removing a missing one is not an error.
	DeleteRecord(ctx context.Context, kind, owner, id string) error
	// DeleteRecords removes every record of kind for owner.
	DeleteRecords(ctx context.Context, kind, owner string) error
}

// tempEntry is a Temp value with the moment it stops existing.
type tempEntry struct {
	value   []byte
	expires time.Time
}

func (e tempEntry) live(now time.Time) bool { return now.Before(e.expires) }

// recordKey names one owner's records of one kind.
type recordKey struct{ kind, owner string }

// memoryKV is the KV half of memoryStore.
type memoryKV struct {
	mu      sync.Mutex
	temp    map[string]tempEntry
	records map[recordKey]map[string][]byte
}

func newMemoryKV() memoryKV {
	return memoryKV{temp: make(map[string]tempEntry), records: make(map[recordKey]map[string][]byte)}
}

func (m *memoryKV) PutTemp(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.temp[key] = tempEntry{value: bytes.Clone(value), expires: time.Now().Add(ttl)}
	return nil
}

func (m *memoryKV) GetTemp(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.temp[key]
	if !ok || !e.live(time.Now()) {
		return nil, false, nil
	}
	return bytes.Clone(e.value), true, nil
}

func (m *memoryKV) TakeTemp(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.temp[key]
	delete(m.temp, key)
	if !ok || !e.live(time.Now()) {
		return nil, false, nil
	}
	return e.value, true, nil
}

func (m *memoryKV) ClaimTemp(_ context.Context, key string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if e, ok := m.temp[key]; ok && e.live(now) {
		return false, nil
	}
	m.temp[key] = tempEntry{expires: now.Add(ttl)}
	return true, nil
}

func (m *memoryKV) PutRecord(_ context.Context, kind, owner, id string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := recordKey{kind, owner}
	if m.records[k] == nil {
		m.records[k] = make(map[string][]byte)
	}
	m.records[k][id] = bytes.Clone(value)
	return nil
}

func (m *memoryKV) Records(_ context.Context, kind, owner string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.records[recordKey{kind, owner}]))
	for id, v := range m.records[recordKey{kind, owner}] {
		out[id] = bytes.Clone(v)
	}
	return out, nil
}

func (m *memoryKV) DeleteRecord(_ context.Context, kind, owner, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records[recordKey{kind, owner}], id)
	return nil
}

func (m *memoryKV) DeleteRecords(_ context.Context, kind, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, recordKey{kind, owner})
	return nil
}

// purgeTemp drops expired Temp entries.
func (m *memoryKV) purgeTemp(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.temp {
		if !e.live(now) {
			delete(m.temp, k)
		}
	}
}
