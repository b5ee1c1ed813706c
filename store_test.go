package tokenauth

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestDecideRotation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const grace = 10 * time.Second
	base := Session{
		ID: "s", User: "u", Created: t0.Add(-time.Hour), LastUsed: t0.Add(-time.Minute),
		Expires: t0.Add(time.Hour), Generation: 5, RotatedAt: t0.Add(-time.Minute), IdleTTL: 30 * time.Minute,
	}
	for _, tc := range []struct {
		name      string
		mutate    func(*Session)
		presented uint64
		now       time.Time
		grace     time.Duration
		want      rotation
		wantGen   uint64
		revoked   bool
		// whether LastUsed/RotatedAt move to now
		touched bool
	}{
		{name: "current generation rotates", presented: 5, now: t0, grace: grace, want: rotated, wantGen: 6, touched: true},
		{name: "previous generation inside grace", mutate: func(s *Session) { s.RotatedAt = t0.Add(-5 * time.Second) }, presented: 4, now: t0, grace: grace, want: graced, wantGen: 5},
		{name: "previous generation at the end of grace", mutate: func(s *Session) { s.RotatedAt = t0.Add(-grace) }, presented: 4, now: t0, grace: grace, want: graced, wantGen: 5},
		{name: "previous generation after grace", mutate: func(s *Session) { s.RotatedAt = t0.Add(-grace - time.Nanosecond) }, presented: 4, now: t0, grace: grace, want: reused, wantGen: 5, revoked: true},
		{name: "previous generation, grace disabled", mutate: func(s *Session) { s.RotatedAt = t0 }, presented: 4, now: t0, grace: 0, want: reused, wantGen: 5, revoked: true},
		{name: "older generation inside grace", mutate: func(s *Session) { s.RotatedAt = t0 }, presented: 3, now: t0, grace: grace, want: reused, wantGen: 5, revoked: true},
		{name: "generation 0", presented: 0, now: t0, grace: grace, want: reused, wantGen: 5, revoked: true},
		// ahead of the store: it lost rotations; the session catches up
		{name: "generation ahead by one catches up", presented: 6, now: t0, grace: grace, want: caughtUp, wantGen: 7, touched: true},
		{name: "generation far ahead catches up", presented: 1000, now: t0, grace: 0, want: caughtUp, wantGen: 1001, touched: true},
		{name: "generation ahead, grace disabled", presented: 6, now: t0, grace: 0, want: caughtUp, wantGen: 7, touched: true},
		{name: "generation ahead of a revoked session", mutate: func(s *Session) { s.Revoked = true }, presented: 6, now: t0, grace: grace, want: refusedRevoked, wantGen: 5, revoked: true},
		{name: "generation ahead of an expired session", mutate: func(s *Session) { s.Expires = t0 }, presented: 6, now: t0, grace: grace, want: refusedExpired, wantGen: 5},
		{name: "generation beyond what a store computes exactly", presented: maxGeneration, now: t0, grace: grace, want: reused, wantGen: 5, revoked: true},
		{name: "revoked session", mutate: func(s *Session) { s.Revoked = true }, presented: 5, now: t0, grace: grace, want: refusedRevoked, wantGen: 5, revoked: true},
		{name: "revoked session, previous generation in grace", mutate: func(s *Session) { s.Revoked = true; s.RotatedAt = t0 }, presented: 4, now: t0, grace: grace, want: refusedRevoked, wantGen: 5, revoked: true},
		{name: "past session_ttl", mutate: func(s *Session) { s.Expires = t0 }, presented: 5, now: t0, grace: grace, want: refusedExpired, wantGen: 5},
		{name: "idle past idle_ttl", mutate: func(s *Session) { s.LastUsed = t0.Add(-30 * time.Minute) }, presented: 5, now: t0, grace: grace, want: refusedExpired, wantGen: 5},
		{name: "idle just inside idle_ttl", mutate: func(s *Session) { s.LastUsed = t0.Add(-30*time.Minute + time.Nanosecond) }, presented: 5, now: t0, grace: grace, want: rotated, wantGen: 6, touched: true},
		{name: "no idle limit", mutate: func(s *Session) { s.IdleTTL = 0; s.LastUsed = t0.Add(-100 * time.Hour) }, presented: 5, now: t0, grace: grace, want: rotated, wantGen: 6, touched: true},
		{name: "expired beats reuse", mutate: func(s *Session) { s.Expires = t0.Add(-time.Second) }, presented: 1, now: t0, grace: grace, want: refusedExpired, wantGen: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			if tc.mutate != nil {
				tc.mutate(&s)
			}
			before := s
			got := decideRotation(&s, tc.presented, tc.now, tc.grace)
			if got != tc.want {
				t.Fatalf("outcome %d, want %d", got, tc.want)
			}
			if s.Generation != tc.wantGen || s.Revoked != tc.revoked {
				t.Fatalf("after: generation %d revoked %v, want %d %v", s.Generation, s.Revoked, tc.wantGen, tc.revoked)
			}
			if tc.touched {
				if !s.LastUsed.Equal(tc.now) || !s.RotatedAt.Equal(tc.now) {
					t.Fatalf("rotation did not record its time: %+v", s)
				}
			} else if !s.LastUsed.Equal(before.LastUsed) || !s.RotatedAt.Equal(before.RotatedAt) {
				t.Fatalf("a non-rotation changed the times: %+v", s)
			}
			if got.changesSession() != (got == rotated || got == caughtUp || got == reused) {
				t.Fatal("changesSession disagrees with the outcome")
			}
		})
	}
}

// storeFactories gives each store under test; bolt uses a real file.
func storeFactories(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { return newMemoryStore() },
		"bolt": func(t *testing.T) Store {
			db, err := openBoltDB(filepath.Join(t.TempDir(), "sub", "sessions.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			s, err := newBoltStore(db, "realm")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func sessionFixture(id, user string, now time.Time) Session {
	return Session{ID: id, User: user, Created: now, LastUsed: now, Expires: now.Add(time.Hour), Generation: 1, IdleTTL: 10 * time.Minute}
}

func TestStores(t *testing.T) {
	ctx := context.Background()
	for name, newStore := range storeFactories(t) {
		t.Run(name, func(t *testing.T) {
			now := time.Now()
			st := newStore(t)
			if _, err := st.Get(ctx, "nope"); !errors.Is(err, ErrSessionNotFound) {
				t.Fatalf("Get unknown: %v", err)
			}
			if _, _, err := st.Rotate(ctx, "nope", 1, now, time.Second); !errors.Is(err, ErrSessionNotFound) {
				t.Fatalf("Rotate unknown: %v", err)
			}
			if err := st.Revoke(ctx, "nope"); err != nil {
				t.Fatalf("Revoke unknown: %v", err)
			}

			a1 := sessionFixture("a1", "alice", now)
			a2 := sessionFixture("a2", "alice", now.Add(time.Millisecond))
			b1 := sessionFixture("b1", "bob", now)
			for _, s := range []Session{a1, a2, b1} {
				if _, err := st.Create(ctx, s, 0); err != nil {
					t.Fatal(err)
				}
			}
			got, err := st.Get(ctx, "a1")
			if err != nil || got.User != "alice" || got.Generation != 1 || !got.Expires.Equal(a1.Expires) || got.IdleTTL != a1.IdleTTL {
				t.Fatalf("Get: %+v %v", got, err)
			}

			// Rotate applies the shared policy and persists it
			s, out, err := st.Rotate(ctx, "a1", 1, now.Add(time.Second), 5*time.Second)
			if err != nil || out != rotated || s.Generation != 2 {
				t.Fatalf("Rotate: %+v %v %v", s, out, err)
			}
			s, out, _ = st.Rotate(ctx, "a1", 1, now.Add(2*time.Second), 5*time.Second)
			if out != graced || s.Generation != 2 {
				t.Fatalf("Rotate in grace: %v %+v", out, s)
			}
			if got, _ := st.Get(ctx, "a1"); got.Generation != 2 || !got.LastUsed.Equal(now.Add(time.Second)) {
				t.Fatalf("after rotation: %+v", got)
			}
			if _, out, _ = st.Rotate(ctx, "a1", 1, now.Add(time.Minute), 5*time.Second); out != reused {
				t.Fatalf("Rotate after grace: %v", out)
			}
			if got, _ := st.Get(ctx, "a1"); !got.Revoked {
				t.Fatal("reuse did not persist the revocation")
			}
			if _, out, _ = st.Rotate(ctx, "a1", 2, now.Add(time.Minute), 5*time.Second); out != refusedRevoked {
				t.Fatalf("Rotate of a revoked session: %v", out)
			}

			list, err := st.ListUser(ctx, "alice")
			if err != nil || len(list) != 2 || list[0].ID != "a1" || list[1].ID != "a2" {
				t.Fatalf("ListUser: %+v %v", list, err)
			}
			revoked, err := st.ListRevoked(ctx)
			if err != nil || len(revoked) != 1 || revoked[0].ID != "a1" {
				t.Fatalf("ListRevoked: %+v %v", revoked, err)
			}

			ids, err := st.RevokeUser(ctx, "alice")
			if err != nil || len(ids) != 1 || ids[0] != "a2" {
				t.Fatalf("RevokeUser returns the newly revoked: %v %v", ids, err)
			}
			if got, _ := st.Get(ctx, "b1"); got.Revoked {
				t.Fatal("RevokeUser revoked another user's session")
			}
			if err := st.Revoke(ctx, "b1"); err != nil {
				t.Fatal(err)
			}
			if revoked, _ := st.ListRevoked(ctx); len(revoked) != 3 {
				t.Fatalf("ListRevoked after revocations: %d", len(revoked))
			}

			// purge drops what can no longer be refreshed, and only that
			c1 := sessionFixture("c1", "carol", now)
			c1.Expires = now.Add(time.Hour)
			c1.IdleTTL = 0
			if _, err := st.Create(ctx, c1, 0); err != nil {
				t.Fatal(err)
			}
			p, ok := st.(purger)
			if !ok {
				t.Fatalf("%s store does not purge", name)
			}
			if err := p.purge(now.Add(30 * time.Minute)); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a1", "a2", "b1"} {
				if _, err := st.Get(ctx, id); !errors.Is(err, ErrSessionNotFound) {
					t.Fatalf("idle session %s survived the purge: %v", id, err)
				}
			}
			if _, err := st.Get(ctx, "c1"); err != nil {
				t.Fatalf("a live session was purged: %v", err)
			}
			if list, _ := st.ListUser(ctx, "alice"); len(list) != 0 {
				t.Fatalf("purged sessions still listed: %+v", list)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStoreConcurrentRotation: many rotations of one generation at once;
// the store's atomicity means exactly one rotates.
func TestStoreConcurrentRotation(t *testing.T) {
	ctx := context.Background()
	for name, newStore := range storeFactories(t) {
		for _, grace := range []time.Duration{time.Minute, 0} {
			t.Run(name+"/grace="+grace.String(), func(t *testing.T) {
				st := newStore(t)
				now := time.Now()
				if _, err := st.Create(ctx, sessionFixture("s", "u", now), 0); err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				outcomes := map[rotation]int{}
				var wg sync.WaitGroup
				for i := 0; i < 50; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s, out, err := st.Rotate(ctx, "s", 1, now, grace)
						if err != nil {
							t.Error(err)
							return
						}
						if s.Generation != 2 {
							t.Errorf("outcome %d with generation %d", out, s.Generation)
						}
						mu.Lock()
						outcomes[out]++
						mu.Unlock()
					}()
				}
				wg.Wait()
				if outcomes[rotated] != 1 {
					t.Fatalf("%d rotations, want exactly 1: %v", outcomes[rotated], outcomes)
				}
				final, _ := st.Get(ctx, "s")
				if grace > 0 {
					if outcomes[graced] != 49 || final.Generation != 2 || final.Revoked {
						t.Fatalf("with grace: %v, final %+v", outcomes, final)
					}
				} else if outcomes[reused] != 1 || outcomes[refusedRevoked] != 48 || !final.Revoked {
					// without grace the first duplicate is reuse and ends
					// the session; the others find it revoked
					t.Fatalf("without grace: %v, final %+v", outcomes, final)
				}
			})
		}
	}
}
