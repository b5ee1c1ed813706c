package tokenauth

// The store conformance suite: every Store implementation runs the same
// cases, so memory, bolt (a real file) and Redis (a real redis-server)
// behave identically, and the Lua rotation script is proven to decide
// exactly as decideRotation does.

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// storeKinds opens a fresh, empty store of each kind.
var storeKinds = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"memory", func(t *testing.T) Store { return newMemoryStore() }},
	{"bolt", func(t *testing.T) Store {
		db, err := openBoltDB(filepath.Join(t.TempDir(), "sessions.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := newBoltStore(db, "conformance")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"redis", func(t *testing.T) Store {
		// a realm of its own on the shared server keeps tests apart
		s, err := newRedisStore(testenv.RedisURL(t), "conformance-"+randomID(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	// the same on the run's Sentinel setup and 3-master Cluster
	// (test.d/setup-redis-ha.sh)
	{"redis_sentinel", func(t *testing.T) Store {
		return openTestRedis(t, testSentinelConfig(t), "conformance-"+randomID())
	}},
	{"redis_cluster", func(t *testing.T) Store {
		return openTestRedis(t, testClusterConfig(t), "conformance-"+randomID())
	}},
}

// eachStore runs a case against every store kind.
func eachStore(t *testing.T, fn func(t *testing.T, st Store)) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) { fn(t, kind.open(t)) })
	}
}

// clock is a base time the stores keep exactly (microseconds), close to
// the real time so that Redis does not expire keys early.
func clock() time.Time { return time.Now().Truncate(time.Millisecond) }

func newTestSession(user string, now time.Time) Session {
	return Session{
		ID: randomID(), User: user, Created: now, LastUsed: now,
		Expires: now.Add(30 * 24 * time.Hour), Generation: 1, IdleTTL: 7 * 24 * time.Hour,
	}
}

func mustCreate(t *testing.T, st Store, s Session) Session {
	t.Helper()
	if _, err := st.Create(context.Background(), s, 0); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return s
}

func mustGet(t *testing.T, st Store, sid string) Session {
	t.Helper()
	s, err := st.Get(context.Background(), sid)
	if err != nil {
		t.Fatalf("Get(%s): %v", sid, err)
	}
	return s
}

func mustRotate(t *testing.T, st Store, sid string, gen uint64, now time.Time, grace time.Duration) (Session, rotation) {
	t.Helper()
	s, outcome, err := st.Rotate(context.Background(), sid, gen, now, grace)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return s, outcome
}

// sameSession compares every field, times by instant.
func sameSession(t *testing.T, got, want Session) {
	t.Helper()
	if got.ID != want.ID || got.User != want.User || got.Generation != want.Generation ||
		got.Revoked != want.Revoked || got.IdleTTL != want.IdleTTL ||
		!got.Created.Equal(want.Created) || !got.LastUsed.Equal(want.LastUsed) ||
		!got.Expires.Equal(want.Expires) || !got.RotatedAt.Equal(want.RotatedAt) {
		t.Fatalf("session differs:\n got  %+v\n want %+v", got, want)
	}
}

func sids(list []Session) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.ID
	}
	return out
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = append([]string(nil), got...), append([]string(nil), want...)
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func TestStoreCreateGet(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		s := mustCreate(t, st, newTestSession("alice", clock()))
		sameSession(t, mustGet(t, st, s.ID), s)
		if _, err := st.Get(context.Background(), "no-such-session"); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("Get unknown: %v, want ErrSessionNotFound", err)
		}
		if _, _, err := st.Rotate(context.Background(), "no-such-session", 1, clock(), time.Second); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("Rotate unknown: %v, want ErrSessionNotFound", err)
		}
	})
}

func TestStoreRotateGraceReuse(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		s := mustCreate(t, st, newTestSession("alice", now))
		grace := 10 * time.Second

		t1 := now.Add(time.Minute)
		got, outcome := mustRotate(t, st, s.ID, 1, t1, grace)
		if outcome != rotated || got.Generation != 2 || !got.RotatedAt.Equal(t1) || !got.LastUsed.Equal(t1) {
			t.Fatalf("rotate: outcome %v, session %+v", outcome, got)
		}
		sameSession(t, mustGet(t, st, s.ID), got)

		// the previous generation within the grace: current tokens, no change
		got, outcome = mustRotate(t, st, s.ID, 1, t1.Add(grace), grace)
		if outcome != graced || got.Generation != 2 {
			t.Fatalf("grace: outcome %v, session %+v", outcome, got)
		}
		sameSession(t, mustGet(t, st, s.ID), got)

		// past the grace it is reuse: the session is revoked
		got, outcome = mustRotate(t, st, s.ID, 1, t1.Add(grace+time.Microsecond), grace)
		if outcome != reused || !got.Revoked {
			t.Fatalf("reuse: outcome %v, session %+v", outcome, got)
		}
		if !mustGet(t, st, s.ID).Revoked {
			t.Fatal("reuse did not persist the revocation")
		}
		// and the current generation is refused from now on
		if _, outcome = mustRotate(t, st, s.ID, 2, t1.Add(grace+2*time.Microsecond), grace); outcome != refusedRevoked {
			t.Fatalf("after reuse: outcome %v, want refusedRevoked", outcome)
		}
		revoked, err := st.ListRevoked(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "ListRevoked", sids(revoked), []string{s.ID})
	})
}

func TestStoreReuseOfOlderGeneration(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		s := mustCreate(t, st, newTestSession("alice", now))
		for gen := uint64(1); gen <= 3; gen++ {
			if _, outcome := mustRotate(t, st, s.ID, gen, now.Add(time.Duration(gen)*time.Second), time.Minute); outcome != rotated {
				t.Fatalf("rotation %d: %v", gen, outcome)
			}
		}
		// generation 2 is two behind the current 4: reuse even within the grace
		if got, outcome := mustRotate(t, st, s.ID, 2, now.Add(4*time.Second), time.Minute); outcome != reused || !got.Revoked {
			t.Fatalf("older generation: outcome %v", outcome)
		}
	})
}

// TestStoreAheadGeneration: a refresh token whose generation is ahead of
// the store's (the store lost the rotation that issued it, as a Redis
// failover loses an unreplicated write) is accepted and the session
// catches up; afterwards the previous generation within the grace is
// graced and an older one is reuse, as on any session.
func TestStoreAheadGeneration(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		grace := 10 * time.Second
		s := mustCreate(t, st, newTestSession("alice", now))

		// the store is at 1; the client holds 2 from a rotation it lost
		t1 := now.Add(time.Minute)
		got, outcome := mustRotate(t, st, s.ID, 2, t1, grace)
		if outcome != caughtUp || got.Generation != 3 || got.Revoked || !got.RotatedAt.Equal(t1) || !got.LastUsed.Equal(t1) {
			t.Fatalf("ahead by one: outcome %v, session %+v", outcome, got)
		}
		sameSession(t, mustGet(t, st, s.ID), got)
		// further behind (several lost rotations) catches up the same way
		t2 := t1.Add(time.Minute)
		if got, outcome = mustRotate(t, st, s.ID, 7, t2, grace); outcome != caughtUp || got.Generation != 8 {
			t.Fatalf("ahead by five: outcome %v, session %+v", outcome, got)
		}
		// a racing duplicate of the caught-up token: graced
		if got, outcome = mustRotate(t, st, s.ID, 7, t2.Add(grace), grace); outcome != graced || got.Generation != 8 {
			t.Fatalf("previous within grace: outcome %v, session %+v", outcome, got)
		}
		// the current one rotates normally
		if got, outcome = mustRotate(t, st, s.ID, 8, t2.Add(grace), grace); outcome != rotated || got.Generation != 9 {
			t.Fatalf("current after catching up: outcome %v, session %+v", outcome, got)
		}
		// a token older than the previous one is still reuse
		if got, outcome = mustRotate(t, st, s.ID, 7, t2.Add(grace), grace); outcome != reused || !got.Revoked {
			t.Fatalf("older: outcome %v, session %+v", outcome, got)
		}
		sameSession(t, mustGet(t, st, s.ID), got)
	})
}

func TestStoreRevoke(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		a := mustCreate(t, st, newTestSession("alice", now))
		b := mustCreate(t, st, newTestSession("alice", now.Add(time.Millisecond)))
		if err := st.Revoke(context.Background(), a.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.Revoke(context.Background(), "no-such-session"); err != nil {
			t.Fatalf("revoking an unknown session: %v", err)
		}
		if !mustGet(t, st, a.ID).Revoked || mustGet(t, st, b.ID).Revoked {
			t.Fatal("Revoke must revoke exactly the session named")
		}
		if _, outcome := mustRotate(t, st, a.ID, 1, now.Add(time.Second), time.Minute); outcome != refusedRevoked {
			t.Fatalf("rotating a revoked session: %v", outcome)
		}
		revoked, err := st.ListRevoked(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "ListRevoked", sids(revoked), []string{a.ID})
	})
}

func TestStoreRevokeUser(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		var alice []string
		for i := 0; i < 3; i++ {
			alice = append(alice, mustCreate(t, st, newTestSession("alice", now.Add(time.Duration(i)*time.Millisecond))).ID)
		}
		bob := mustCreate(t, st, newTestSession("bob", now))
		// one already revoked is not reported again
		if err := st.Revoke(context.Background(), alice[0]); err != nil {
			t.Fatal(err)
		}
		ids, err := st.RevokeUser(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "RevokeUser", ids, alice[1:])
		for _, sid := range alice {
			if !mustGet(t, st, sid).Revoked {
				t.Fatalf("session %s of alice not revoked", sid)
			}
		}
		if mustGet(t, st, bob.ID).Revoked {
			t.Fatal("bob's session was revoked too")
		}
		if ids, err = st.RevokeUser(context.Background(), "alice"); err != nil || len(ids) != 0 {
			t.Fatalf("second RevokeUser: %v %v", ids, err)
		}
		if ids, err = st.RevokeUser(context.Background(), "nobody"); err != nil || len(ids) != 0 {
			t.Fatalf("RevokeUser of an unknown user: %v %v", ids, err)
		}
	})
}

func TestStoreListUser(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		var want []Session
		for i := 0; i < 3; i++ {
			want = append(want, mustCreate(t, st, newTestSession("alice", now.Add(time.Duration(i)*time.Second))))
		}
		mustCreate(t, st, newTestSession("bob", now))
		if err := st.Revoke(context.Background(), want[1].ID); err != nil {
			t.Fatal(err)
		}
		want[1].Revoked = true
		got, err := st.ListUser(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("ListUser: %d sessions, want %d", len(got), len(want))
		}
		for i := range want { // oldest first, revoked ones included
			sameSession(t, got[i], want[i])
		}
		if got, err := st.ListUser(context.Background(), "nobody"); err != nil || len(got) != 0 {
			t.Fatalf("ListUser of an unknown user: %v %v", got, err)
		}
	})
}

func TestStoreExpiry(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		// idle: unused past idle_ttl, though far from the absolute expiry
		idle := mustCreate(t, st, newTestSession("alice", now))
		if _, outcome := mustRotate(t, st, idle.ID, 1, now.Add(idle.IdleTTL), time.Minute); outcome != refusedExpired {
			t.Fatalf("idle expiry: %v", outcome)
		}
		// a rotation just before the idle deadline moves it on
		if _, outcome := mustRotate(t, st, idle.ID, 1, now.Add(idle.IdleTTL-time.Microsecond), time.Minute); outcome != rotated {
			t.Fatalf("rotation before the idle deadline: %v", outcome)
		}
		// absolute: rotations do not extend it
		abs := newTestSession("alice", now)
		abs.Expires = now.Add(time.Hour)
		mustCreate(t, st, abs)
		if _, outcome := mustRotate(t, st, abs.ID, 1, now.Add(59*time.Minute), 0); outcome != rotated {
			t.Fatalf("rotation before the absolute expiry: %v", outcome)
		}
		if _, outcome := mustRotate(t, st, abs.ID, 2, now.Add(time.Hour), 0); outcome != refusedExpired {
			t.Fatalf("absolute expiry: %v", outcome)
		}
	})
}

// TestStoreExpiryRealTime lets sessions actually run out: they drop out of
// the listings (and out of Redis by key expiry) and refresh no more.
func TestStoreExpiryRealTime(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		short := newTestSession("alice", now)
		short.IdleTTL = 300 * time.Millisecond
		mustCreate(t, st, short)
		revokedShort := newTestSession("alice", now)
		revokedShort.Expires = now.Add(300 * time.Millisecond)
		mustCreate(t, st, revokedShort)
		if err := st.Revoke(context.Background(), revokedShort.ID); err != nil {
			t.Fatal(err)
		}
		long := mustCreate(t, st, newTestSession("alice", now))

		time.Sleep(time.Until(now.Add(400 * time.Millisecond)))
		list, err := st.ListUser(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "ListUser after expiry", sids(list), []string{long.ID})
		revoked, err := st.ListRevoked(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "ListRevoked after expiry", sids(revoked), nil)
		_, outcome, err := st.Rotate(context.Background(), short.ID, 1, time.Now(), time.Minute)
		if !errors.Is(err, ErrSessionNotFound) && (err != nil || outcome != refusedExpired) {
			t.Fatalf("rotating an expired session: %v %v", outcome, err)
		}
	})
}

// TestStoreConcurrentRotations: 50 refreshes of one token at once make
// exactly one rotation; the others are graced, never a second lineage.
func TestStoreConcurrentRotations(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		s := mustCreate(t, st, newTestSession("alice", now))
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			outcomes = map[rotation]int{}
			errs     []error
		)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, outcome, err := st.Rotate(context.Background(), s.ID, 1, now.Add(time.Second), time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				if got.Generation != 2 {
					errs = append(errs, fmt.Errorf("answered with generation %d", got.Generation))
				}
				outcomes[outcome]++
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if outcomes[rotated] != 1 || outcomes[graced] != 49 {
			t.Fatalf("outcomes: %v, want 1 rotated and 49 graced", outcomes)
		}
		if got := mustGet(t, st, s.ID); got.Generation != 2 || got.Revoked {
			t.Fatalf("after the race: %+v", got)
		}
	})
}

// TestStoreRotationPolicy runs each store against decideRotation itself on
// the policy's boundaries and on random sequences: the Lua script in
// store_redis.go and the Go policy must never disagree.
func TestStoreRotationPolicy(t *testing.T) {
	type step struct {
		presented uint64
		at        time.Duration // after the session's creation
		grace     time.Duration
	}
	base := newTestSession("alice", time.Time{})
	base.Expires = base.Created.Add(time.Hour)
	base.IdleTTL = 10 * time.Minute
	cases := map[string][]step{
		"rotate":                     {{1, time.Second, 0}},
		"grace exactly at its end":   {{1, time.Second, 0}, {1, time.Second + 5*time.Second, 5 * time.Second}},
		"grace one µs late":          {{1, time.Second, 0}, {1, time.Second + 5*time.Second + time.Microsecond, 5 * time.Second}},
		"grace zero, same instant":   {{1, time.Second, 0}, {1, time.Second, 0}},
		"previous gen never rotated": {{0, time.Second, time.Hour}},
		"generation ahead":           {{5, time.Second, time.Hour}},
		"ahead, then previous":       {{3, time.Second, 0}, {3, 2 * time.Second, 5 * time.Second}},
		"ahead, then older":          {{3, time.Second, 0}, {2, 2 * time.Second, 5 * time.Second}},
		"ahead beyond exact numbers": {{maxGeneration, time.Second, 0}},
		"idle deadline exactly":      {{1, 10 * time.Minute, time.Hour}},
		"idle deadline minus 1µs":    {{1, 10*time.Minute - time.Microsecond, time.Hour}},
		"idle moves with rotation":   {{1, 9 * time.Minute, 0}, {2, 18 * time.Minute, 0}},
		"absolute deadline exactly":  {{1, 9 * time.Minute, 0}, {2, 18 * time.Minute, 0}, {3, 27 * time.Minute, 0}, {4, 36 * time.Minute, 0}, {5, 45 * time.Minute, 0}, {6, 54 * time.Minute, 0}, {7, time.Hour, 0}},
		"revoked refuses":            {{1, time.Second, 0}, {1, 2 * time.Second, 0}, {2, 3 * time.Second, time.Hour}},
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		var steps []step
		at := time.Duration(0)
		for j := 0; j < 8; j++ {
			at += time.Duration(rng.Intn(6000)) * time.Millisecond
			steps = append(steps, step{uint64(rng.Intn(8)), at, time.Duration(rng.Intn(3)) * 2 * time.Second})
		}
		cases[fmt.Sprintf("random %d", i)] = steps
	}

	eachStore(t, func(t *testing.T, st Store) {
		for name, steps := range cases {
			now := clock()
			model := base
			model.ID, model.Created, model.LastUsed = randomID(), now, now
			model.Expires = now.Add(base.Expires.Sub(base.Created))
			mustCreate(t, st, model)
			for i, s := range steps {
				want := decideRotation(&model, s.presented, now.Add(s.at), s.grace)
				got, outcome := mustRotate(t, st, model.ID, s.presented, now.Add(s.at), s.grace)
				if outcome != want {
					t.Fatalf("%s, step %d: outcome %v, decideRotation says %v", name, i, outcome, want)
				}
				sameSession(t, got, model)
			}
		}
	})
}
