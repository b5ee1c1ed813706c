package tokenauth

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	bolt "go.etcd.io/bbolt"
)

// TestRealmSharingAndRelease: handlers of one realm share its state (as
// the old and new config do during a reload); realms may share a bolt
// file; the last Cleanup closes the file, so nothing keeps its lock.
func TestRealmSharingAndRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	newHandler := func(realm string) *TokenAuth {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		ta := hs256Config(realm, User{ID: "alice", Password: testenv.Hash(t, "a")})
		ta.Store = &StoreConfig{Backend: "bolt", Path: path}
		if err := ta.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return ta
	}
	oldCfg, newCfg := newHandler("pool-a"), newHandler("pool-a")
	other := newHandler("pool-b")
	if oldCfg.realm != newCfg.realm {
		t.Fatal("two handlers of one realm do not share its state")
	}
	if other.realm == oldCfg.realm || other.realm.store.(*boltStore).db != oldCfg.realm.store.(*boltStore).db {
		t.Fatal("realms in one file: want separate realm state over one shared database")
	}

	// a session opened through the old config is usable through the new
	_, rt := loginInProcess(t, oldCfg, "alice", "a")
	if err := oldCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	w := serve(t, newCfg, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+rt+`"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("refresh after the old config's cleanup: %d %s", w.Code, w.Body)
	}
	// realm b does not know realm a's sessions, though they share the file
	if w := serve(t, other, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+rt+`"}`); w.Code != http.StatusUnauthorized {
		t.Fatalf("a session of realm a in realm b: %d", w.Code)
	}

	if err := newCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// realm b still works after realm a is gone
	loginInProcess(t, other, "alice", "a")
	if err := other.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// everything released: the file can be opened again without waiting
	// for a lock (bolt would wait the whole timeout, then fail)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("the session database is still locked after the last cleanup: %v", err)
	}
	_ = db.Close()
}

// TestRemovedUser: when a user disappears from the users file, their
// refreshes and re-authentications are refused, but nothing permanent
// happens: the session is not revoked (nor rotated), so when the user
// comes back (the file was read mid-rewrite) the same refresh token works.
func TestRemovedUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.txt")
	both := "alice:" + testenv.Hash(t, "a") + "\nbob:" + testenv.Hash(t, "b") + "\n"
	if err := os.WriteFile(path, []byte(both), 0o600); err != nil {
		t.Fatal(err)
	}
	ta := hs256Config("removed-user-test")
	ta.UsersFile = path
	provisionInProcess(t, ta)
	at, rt := loginInProcess(t, ta, "alice", "a")
	refresh := `{"action":"refresh","refresh_token":"` + rt + `"}`

	rewriteUsersFile(t, ta.users, "bob:"+testenv.Hash(t, "b")+"\n")
	if w := serve(t, ta, "POST", "/authentication", refresh); w.Code != http.StatusUnauthorized {
		t.Fatalf("refresh of a removed user: %d %s", w.Code, w.Body)
	}
	if w := serve(t, ta, "POST", "/authentication", `{"strategy":"jwt","accessToken":"`+at+`"}`); w.Code != http.StatusUnauthorized {
		t.Fatalf("re-authentication of a removed user: %d", w.Code)
	}
	s, err := ta.realm.store.Get(context.Background(), testenv.Claim(t, at, "sid"))
	if err != nil || s.Revoked || s.Generation != 1 {
		t.Fatalf("one read without the user changed the session for good: %+v %v", s, err)
	}

	rewriteUsersFile(t, ta.users, both)
	if w := serve(t, ta, "POST", "/authentication", refresh); w.Code != http.StatusCreated {
		t.Fatalf("refresh once the user is back: %d %s", w.Code, w.Body)
	}
}

func TestRevocationSet(t *testing.T) {
	r := newRevocationSet()
	now := time.Now()
	r.add("a", now.Add(time.Minute))
	r.add("b", now)
	if !r.has("a") || !r.has("b") || r.has("c") {
		t.Fatal("has")
	}
	r.prune(now)
	if !r.has("a") || r.has("b") {
		t.Fatal("prune keeps entries until their deadline and no longer")
	}
}
