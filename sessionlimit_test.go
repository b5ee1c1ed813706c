package tokenauth

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	bolt "go.etcd.io/bbolt"
)

// liveIDs lists the ids of a user's live, unrevoked sessions.
func liveIDs(t *testing.T, st Store, user string) []string {
	t.Helper()
	list, err := st.ListUser(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list {
		if !s.Revoked {
			out = append(out, s.ID)
		}
	}
	return out
}

func createLimited(t *testing.T, st Store, s Session, maxLive int) []string {
	t.Helper()
	evicted, err := st.Create(context.Background(), s, maxLive)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return evicted
}

// TestStoreCreateKeepsMaxLive: on every store, a session beyond the
// user's bound revokes the oldest live one in the same Create; revoked
// and expired sessions do not count, other users are untouched, and a
// bound of 0 revokes nothing.
func TestStoreCreateKeepsMaxLive(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		at := func(i int) Session { return newTestSession("alice", now.Add(time.Duration(i)*time.Millisecond)) }
		s1, s2, s3 := at(1), at(2), at(3)
		for _, s := range []Session{s1, s2, s3} {
			if evicted := createLimited(t, st, s, 3); len(evicted) != 0 {
				t.Fatalf("within the bound, Create revoked %v", evicted)
			}
		}
		bob := mustCreate(t, st, newTestSession("bob", now)) // another user's session does not count

		s4 := at(4)
		sameIDs(t, "revoked by the 4th session", createLimited(t, st, s4, 3), []string{s1.ID})
		if !mustGet(t, st, s1.ID).Revoked {
			t.Fatal("the oldest session must be revoked in the store")
		}
		sameIDs(t, "live sessions", liveIDs(t, st, "alice"), []string{s2.ID, s3.ID, s4.ID})
		sameIDs(t, "bob's sessions", liveIDs(t, st, "bob"), []string{bob.ID})

		// a revoked session no longer counts: revoking s2 leaves room
		if err := st.Revoke(context.Background(), s2.ID); err != nil {
			t.Fatal(err)
		}
		s5 := at(5)
		if evicted := createLimited(t, st, s5, 3); len(evicted) != 0 {
			t.Fatalf("after a logout, Create revoked %v", evicted)
		}
		// two beyond a smaller bound: the two oldest go
		s6 := at(6)
		sameIDs(t, "revoked with bound 2", createLimited(t, st, s6, 2), []string{s3.ID, s4.ID})
		sameIDs(t, "live sessions", liveIDs(t, st, "alice"), []string{s5.ID, s6.ID})

		// an expired session does not count
		old := newTestSession("carol", now.Add(-2*time.Hour))
		old.IdleTTL = time.Hour
		old.Expires = now.Add(time.Hour)
		mustCreate(t, st, old)
		if evicted := createLimited(t, st, newTestSession("carol", now), 1); len(evicted) != 0 {
			t.Fatalf("an expired session was counted: %v", evicted)
		}

		if evicted := createLimited(t, st, at(7), 0); len(evicted) != 0 {
			t.Fatalf("bound 0 revoked %v", evicted)
		}
	})
}

// TestStoreCreateConcurrentMaxLive: many logins of one user at once leave
// exactly maxLive live sessions, and every other one is reported revoked
// by exactly one Create.
func TestStoreCreateConcurrentMaxLive(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		concurrentCreates(t, []Store{st}, 5, 24)
	})
}

// TestRedisCreateMaxLiveAcrossInstances: the same with two Redis clients
// (two Caddy instances) creating sessions of one user at once.
func TestRedisCreateMaxLiveAcrossInstances(t *testing.T) {
	eachRedisForm(t, func(t *testing.T, cfg StoreConfig) {
		realm := "max-live-" + randomID()
		concurrentCreates(t, []Store{openTestRedis(t, cfg, realm), openTestRedis(t, cfg, realm)}, 5, 24)
	})
}

func concurrentCreates(t *testing.T, stores []Store, maxLive, n int) {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		evicted []string
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(st Store) {
			defer wg.Done()
			<-start
			s := newTestSession("alice", clock())
			ids, err := st.Create(context.Background(), s, maxLive)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			created = append(created, s.ID)
			evicted = append(evicted, ids...)
		}(stores[i%len(stores)])
	}
	close(start)
	wg.Wait()
	live := liveIDs(t, stores[0], "alice")
	if len(live) != maxLive {
		t.Fatalf("%d live sessions after %d concurrent logins, want %d", len(live), n, maxLive)
	}
	seen := make(map[string]bool)
	for _, sid := range evicted {
		if seen[sid] {
			t.Fatalf("session %s reported revoked twice", sid)
		}
		seen[sid] = true
	}
	for _, sid := range live {
		if seen[sid] {
			t.Fatalf("live session %s reported revoked", sid)
		}
	}
	if len(evicted)+len(live) != len(created) {
		t.Fatalf("%d revoked + %d live != %d created", len(evicted), len(live), len(created))
	}
}

// TestMaxSessionsRevokesOldest: the handler keeps a user within
// max_sessions; the oldest session's access token is refused by the guard
// at once and its refresh token no longer refreshes.
func TestMaxSessionsRevokesOldest(t *testing.T) {
	ta := hs256Config("max-sessions-test", User{ID: "alice", Password: testenv.Hash(t, "a")})
	ta.MaxSessions = 2
	provisionInProcess(t, ta)
	firstAccess, firstRefresh := loginInProcess(t, ta, "alice", "a")
	secondAccess, _ := loginInProcess(t, ta, "alice", "a")
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+firstAccess); w.Code != http.StatusTeapot {
		t.Fatalf("within max_sessions: %d", w.Code)
	}
	loginInProcess(t, ta, "alice", "a")
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+firstAccess); w.Code != http.StatusUnauthorized {
		t.Fatalf("the oldest session's access token after a third login: %d, want 401", w.Code)
	}
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+secondAccess); w.Code != http.StatusTeapot {
		t.Fatalf("the second session must stay: %d", w.Code)
	}
	if w := serve(t, ta, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+firstRefresh+`"}`); w.Code != http.StatusUnauthorized {
		t.Fatalf("the oldest session's refresh token: %d %s, want 401", w.Code, w.Body)
	}
}

// TestMaxSessionsDefault: left out, max_sessions is 100 (and a handler's
// own value wins); a negative value is refused.
func TestMaxSessionsDefault(t *testing.T) {
	if n := (&TokenAuth{}).maxLiveSessions(); n != 100 {
		t.Fatalf("default max_sessions %d", n)
	}
	ta := hs256Config("max-sessions-negative")
	ta.MaxSessions = -1
	ta.applyDefaults()
	if err := ta.Validate(); err == nil || !strings.Contains(err.Error(), "max_sessions") {
		t.Fatalf("negative max_sessions: %v", err)
	}
}

// TestMaxSessionsRevocationReachesOtherInstances: a session revoked to
// make room on one instance is refused by the other's guard, through the
// store's revocation feed.
func TestMaxSessionsRevocationReachesOtherInstances(t *testing.T) {
	a, b := twoRealmInstances(t, StoreConfig{Backend: "redis", URL: testenv.RedisURL(t)})
	first := newTestSession("alice", clock())
	if err := a.createSession(context.Background(), first, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.createSession(context.Background(), newTestSession("alice", clock().Add(time.Millisecond)), 1); err != nil {
		t.Fatal(err)
	}
	if !a.revoked.has(first.ID) {
		t.Fatal("the creating instance must refuse the revoked session at once")
	}
	testenv.Eventually(t, 5*time.Second, "revocation seen by the other instance", func() bool { return b.revoked.has(first.ID) })
}

// TestLiveIndexStaysShort: the index Create reads to count a user's live
// sessions holds only those (revoked, evicted and logged-out ones drop
// out), so a login reads about max_sessions sessions however many revoked
// ones the user has; a user without an index yet (sessions from before
// it existed) gets one from the user index, and the bound still holds.
func TestLiveIndexStaysShort(t *testing.T) {
	type index struct {
		st   Store
		size func() int
		drop func()
	}
	kinds := map[string]func(t *testing.T) index{
		"bolt": func(t *testing.T) index {
			db, err := openBoltDB(filepath.Join(t.TempDir(), "sessions.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			st, err := newBoltStore(db, "live-index")
			if err != nil {
				t.Fatal(err)
			}
			live := func(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket(st.realm).Bucket(bucketLive) }
			return index{st,
				func() (n int) {
					_ = db.View(func(tx *bolt.Tx) error {
						if b := live(tx).Bucket([]byte("alice")); b != nil {
							n = b.Stats().KeyN
						}
						return nil
					})
					return n
				},
				func() {
					if err := db.Update(func(tx *bolt.Tx) error { return live(tx).DeleteBucket([]byte("alice")) }); err != nil {
						t.Fatal(err)
					}
				}}
		},
		"redis": func(t *testing.T) index {
			st := openTestRedis(t, StoreConfig{Backend: "redis", URL: testenv.RedisURL(t)}, "live-index-"+randomID())
			key := st.prefix + "l:alice"
			return index{st,
				func() int { return int(st.client.ZCard(context.Background(), key).Val()) },
				func() { st.client.Del(context.Background(), key) }}
		},
	}
	for name, open := range kinds {
		t.Run(name, func(t *testing.T) {
			ix := open(t)
			now := clock()
			at := func(i int) Session { return newTestSession("alice", now.Add(time.Duration(i)*time.Millisecond)) }
			var all []Session
			for i := 0; i < 20; i++ {
				all = append(all, at(i))
				createLimited(t, ix.st, all[i], 3)
			}
			if n := ix.size(); n != 3 {
				t.Fatalf("live index of %d entries after 20 logins with max 3", n)
			}
			if err := ix.st.Revoke(context.Background(), all[18].ID); err != nil { // a logout
				t.Fatal(err)
			}
			s20, s21 := at(20), at(21)
			if evicted := createLimited(t, ix.st, s20, 3); len(evicted) != 0 {
				t.Fatalf("after a logout, Create revoked %v", evicted)
			}
			if n := ix.size(); n != 3 {
				t.Fatalf("live index of %d entries after a logout and a login, want 3", n)
			}

			ix.drop()
			sameIDs(t, "revoked when the index is built anew", createLimited(t, ix.st, s21, 3), []string{all[17].ID})
			sameIDs(t, "live sessions", liveIDs(t, ix.st, "alice"), []string{all[19].ID, s20.ID, s21.ID})
			if n := ix.size(); n != 3 {
				t.Fatalf("live index of %d entries after it was built anew, want 3", n)
			}
		})
	}
}
