package tokenauth

import (
	"context"
	"sync"
	"time"
)

// memoryStore keeps sessions in process memory. Sessions are lost when
// Caddy stops; it is meant for tests and throwaway setups.
type memoryStore struct {
	mu       sync.Mutex
	sessions map[string]Session
	memoryKV
}

func newMemoryStore() *memoryStore {
	return &memoryStore{sessions: make(map[string]Session), memoryKV: newMemoryKV()}
}

func (m *memoryStore) Create(_ context.Context, s Session, maxLive int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var theirs []Session
	if maxLive > 0 {
		for _, other := range m.sessions {
			if other.User == s.User {
				theirs = append(theirs, other)
			}
		}
	}
	evicted := beyondLimit(theirs, s.ID, maxLive, time.Now())
	for _, sid := range evicted {
		old := m.sessions[sid]
		old.Revoked = true
		m.sessions[sid] = old
	}
	m.sessions[s.ID] = s
	return evicted, nil
}

func (m *memoryStore) Get(_ context.Context, sid string) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[sid]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	return s, nil
}

func (m *memoryStore) Rotate(_ context.Context, sid string, presented uint64, now time.Time, grace time.Duration) (Session, rotation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[sid]
	if !ok {
		return Session{}, 0, ErrSessionNotFound
	}
	outcome := decideRotation(&s, presented, now, grace)
	if outcome.changesSession() {
		m.sessions[sid] = s
	}
	return s, outcome, nil
}

func (m *memoryStore) Update(_ context.Context, sid string, change func(*SignIn) error) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[sid]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	if err := updateSignIn(&s, time.Now(), change); err != nil {
		return Session{}, err
	}
	m.sessions[sid] = s
	return s, nil
}

func (m *memoryStore) Revoke(_ context.Context, sid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[sid]; ok {
		s.Revoked = true
		m.sessions[sid] = s
	}
	return nil
}

func (m *memoryStore) RevokeUser(_ context.Context, user string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, s := range m.sessions {
		if s.User == user && !s.Revoked {
			s.Revoked = true
			m.sessions[id] = s
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (m *memoryStore) ListUser(_ context.Context, user string) ([]Session, error) {
	return m.filter(time.Now(), func(s Session) bool { return s.User == user }), nil
}

func (m *memoryStore) ListRevoked(_ context.Context) ([]Session, error) {
	return m.filter(time.Now(), func(s Session) bool { return s.Revoked }), nil
}

// filter returns the live sessions that keep says to keep, purging the
// expired ones it meets on the way.
func (m *memoryStore) filter(now time.Time, keep func(Session) bool) []Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Session
	for id, s := range m.sessions {
		if sessionExpired(s, now) {
			delete(m.sessions, id)
			continue
		}
		if keep(s) {
			out = append(out, s)
		}
	}
	sortSessions(out)
	return out
}

// purge drops expired sessions.
func (m *memoryStore) purge(now time.Time) error {
	m.filter(now, func(Session) bool { return false })
	m.purgeTemp(now)
	return nil
}

func (m *memoryStore) Close() error { return nil }
