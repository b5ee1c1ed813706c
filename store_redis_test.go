package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// seenSet collects what a revocation feed delivers.
type seenSet struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (s *seenSet) add(sid string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]time.Time)
	}
	s.m[sid] = until
}

func (s *seenSet) get(sid string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[sid]
	return t, ok
}

// follow starts a revocation feed on st until the test ends.
func follow(t *testing.T, st *redisStore) *seenSet {
	seen := new(seenSet)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); st.followRevocations(stop, seen.add) }()
	t.Cleanup(func() { close(stop); <-done })
	return seen
}

// twoInstances opens two stores of one realm on one Redis (of any form),
// as two Caddy instances would.
func twoInstances(t *testing.T, cfg StoreConfig) (a, b *redisStore) {
	realm := "feed-" + randomID()
	return openTestRedis(t, cfg, realm), openTestRedis(t, cfg, realm)
}

// TestRedisRevocationFeed: revocations made through one instance (logout,
// global logout, reuse) reach the other, with the session's deadline.
func TestRedisRevocationFeed(t *testing.T) { eachRedisForm(t, testRevocationFeed) }

func testRevocationFeed(t *testing.T, cfg StoreConfig) {
	a, b := twoInstances(t, cfg)
	ctx := context.Background()
	now := clock()
	one := mustCreate(t, a, newTestSession("alice", now))
	two := mustCreate(t, a, newTestSession("bob", now))
	three := mustCreate(t, a, newTestSession("bob", now))
	reuse := mustCreate(t, a, newTestSession("carol", now))
	seen := follow(t, b)
	// a session revoked before the feed started arrives by the first full load
	early := mustCreate(t, a, newTestSession("dave", now))
	if err := a.Revoke(ctx, early.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "revocation made before the feed", func() bool { _, ok := seen.get(early.ID); return ok })

	if err := a.Revoke(ctx, one.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	mustRotate(t, a, reuse.ID, 1, now.Add(time.Second), 0)
	if _, outcome := mustRotate(t, a, reuse.ID, 1, now.Add(2*time.Second), 0); outcome != reused {
		t.Fatalf("reuse: %v", outcome)
	}
	for _, s := range []Session{one, two, three, reuse} {
		testenv.Eventually(t, 5*time.Second, "revocation of "+s.ID+" seen by the other instance", func() bool {
			until, ok := seen.get(s.ID)
			return ok && !until.Before(s.deadline())
		})
	}
	if _, ok := seen.get(mustCreate(t, a, newTestSession("erin", now)).ID); ok {
		t.Fatal("a live session was reported revoked")
	}
}

// TestRedisRevocationResync: a revocation whose pub/sub message was lost
// (here: written to the stream only) still reaches every instance through
// the periodic stream read.
func TestRedisRevocationResync(t *testing.T) { eachRedisForm(t, testRevocationResync) }

func testRevocationResync(t *testing.T, cfg StoreConfig) {
	a, b := twoInstances(t, cfg)
	seen := follow(t, b)
	// let the feed finish its first full load, so the entry below comes
	// after the stream position it noted
	marker := mustCreate(t, a, newTestSession("alice", clock()))
	if err := a.Revoke(context.Background(), marker.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "first revocation", func() bool { _, ok := seen.get(marker.ID); return ok })
	// Pub/sub may deliver the marker before the feed's first full load has
	// noted the stream's position; past the load's own timeout it has
	// certainly done so (or failed and will redo it on the next tick).
	time.Sleep(2 * redisIOTimeout)

	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	err := a.client.XAdd(context.Background(), &redis.XAddArgs{
		Stream: a.logKey(), Values: []any{"r", fmt.Sprintf("lost-message-sid %d", until.UnixMilli())},
	}).Err()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "revocation from the stream alone", func() bool {
		got, ok := seen.get("lost-message-sid")
		return ok && got.Equal(until)
	})
}

// TestRedisOutage: with Redis gone, every operation fails fast with
// ErrStoreUnavailable (answered 503), the outage is logged once, and the
// store works again, logging that once, as soon as Redis is back.
func TestRedisOutage(t *testing.T) {
	srv := testenv.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	st, err := newRedisStore(srv.URL, "outage-"+randomID(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	s := mustCreate(t, st, newTestSession("alice", clock()))

	srv.Stop()
	ops := map[string]func() error{
		"Create":      func() error { _, err := st.Create(ctx, newTestSession("alice", clock()), 0); return err },
		"Get":         func() error { _, err := st.Get(ctx, s.ID); return err },
		"Rotate":      func() error { _, _, err := st.Rotate(ctx, s.ID, 1, clock(), time.Second); return err },
		"Revoke":      func() error { return st.Revoke(ctx, s.ID) },
		"RevokeUser":  func() error { _, err := st.RevokeUser(ctx, "alice"); return err },
		"ListUser":    func() error { _, err := st.ListUser(ctx, "alice"); return err },
		"ListRevoked": func() error { _, err := st.ListRevoked(ctx); return err },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, errOutageLogged) {
			t.Fatalf("%s while Redis is down: %v, want ErrStoreUnavailable", name, err)
		}
	}
	if n := logs.FilterMessageSnippet("unreachable").Len(); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "password") {
			t.Fatalf("log line mentions a password: %v", e)
		}
	}

	srv.Start()
	testenv.Eventually(t, 10*time.Second, "store usable again", func() bool {
		_, err := st.Create(ctx, newTestSession("alice", clock()), 0)
		return err == nil
	})
	mustCreate(t, st, newTestSession("alice", clock()))
	if n := logs.FilterMessageSnippet("reachable again").Len(); n != 1 {
		t.Fatalf("recovery logged %d times, want once", n)
	}
}

// TestRedisUnreachableFailsFast: a Redis that accepts no connections
// (nothing listening) answers ErrStoreUnavailable, not a hang.
func TestRedisUnreachableFailsFast(t *testing.T) {
	st, err := newRedisStore(fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)), "down", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := st.Create(ctx, newTestSession("alice", clock()), 0); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Create: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Create hung until the test's own deadline")
	}
}

// TestRedisURLAndDatabase: password and database number come from the URL;
// a realm's keys carry its prefix.
func TestRedisURLAndDatabase(t *testing.T) {
	opts, err := parseRedisURL("redis://:s3cret@127.0.0.1:6390/5")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Password != "s3cret" || opts.DB != 5 || opts.Addr != "127.0.0.1:6390" || opts.TLSConfig != nil {
		t.Fatalf("parsed %+v", opts)
	}
	if opts.DialTimeout != redisDialTimeout || opts.ReadTimeout != redisIOTimeout {
		t.Fatalf("timeouts not set: %+v", opts)
	}
	opts, err = parseRedisURL("rediss://user:pw@cache.example:6380/1")
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil || opts.Username != "user" || opts.Password != "pw" || opts.DB != 1 {
		t.Fatalf("parsed %+v", opts)
	}
	for _, bad := range []string{"", "http://x:6379", "127.0.0.1:6379", "redis://:pw@host:6379/notadb"} {
		_, err := parseRedisURL(bad)
		if err == nil {
			t.Fatalf("%q accepted", bad)
		}
		if strings.Contains(err.Error(), "pw") {
			t.Fatalf("error reveals the password: %v", err)
		}
	}

	// database 3 of the real server: keys land there, under the prefix
	url := testenv.RedisURL(t)
	base := url[:strings.LastIndex(url, "/")]
	st, err := newRedisStore(base+"/3", "dbtest", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := mustCreate(t, st, newTestSession("alice", clock()))
	n, err := st.client.Exists(context.Background(), "token_auth:{dbtest}:s:"+s.ID).Result()
	if err != nil || n != 1 {
		t.Fatalf("session key in db 3: %d %v", n, err)
	}
	if db := st.client.(*redis.Client).Options().DB; db != 3 {
		t.Fatalf("client on db %d", db)
	}
	ttl, err := st.client.PTTL(context.Background(), "token_auth:{dbtest}:s:"+s.ID).Result()
	if err != nil || ttl <= 0 || ttl > s.IdleTTL {
		t.Fatalf("session key must expire with the session's deadline: ttl %v %v", ttl, err)
	}
}

// TestStoreConfigRedis: configuration of the redis store, from the
// Caddyfile through placeholders to validation.
func TestStoreConfigRedis(t *testing.T) {
	for _, tc := range []struct {
		in, wantErr string
	}{
		{"store redis redis://127.0.0.1:6379/0", ""},
		{"store redis rediss://:pw@cache:6380/2", ""},
		{"store redis {env.TEST_TOKEN_AUTH_REDIS}", ""},
		{"store redis", "store takes"},
		{"store redis http://127.0.0.1:6379", "redis:// or rediss://"},
		{"store redis redis://h:6379/x", "invalid URL"},
	} {
		d := caddyfile.NewTestDispenser("token_auth {\n" + tc.in + "\n}")
		ta := new(TokenAuth)
		err := ta.UnmarshalCaddyfile(d)
		if tc.wantErr == "" && err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Fatalf("%q: error %v, want %q", tc.in, err, tc.wantErr)
		}
	}

	t.Setenv("TEST_TOKEN_AUTH_REDIS", "redis://127.0.0.1:6399/4")
	cfg := StoreConfig{Backend: "redis", URL: "{env.TEST_TOKEN_AUTH_REDIS}"}.resolved()
	if cfg.URL != "redis://127.0.0.1:6399/4" || cfg.validate() != nil {
		t.Fatalf("placeholder not resolved: %+v", cfg)
	}
	os.Unsetenv("TEST_TOKEN_AUTH_REDIS")
	if err := (StoreConfig{Backend: "redis", URL: "{env.TEST_TOKEN_AUTH_REDIS}"}.resolved()).validate(); err == nil {
		t.Fatal("an empty URL after resolving was accepted")
	}
	if err := (StoreConfig{Backend: "redis"}).validate(); err == nil {
		t.Fatal("store redis without URL accepted")
	}
}

// TestRealmRevocationsAcrossInstances: two realm states on one Redis, as
// two Caddy processes have: a logout through one is refused by the other's
// revocation set, with no store call on the guard's path.
func TestRealmRevocationsAcrossInstances(t *testing.T) {
	eachRedisForm(t, testRealmRevocationsAcrossInstances)
}

// twoRealmInstances opens one realm twice on a shared store, as two Caddy
// processes do; both close when the test ends.
func twoRealmInstances(t *testing.T, cfg StoreConfig) (a, b *realmState) {
	t.Helper()
	realm := "realm-" + randomID()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	for _, rs := range []**realmState{&a, &b} {
		opened, err := openRealm(ctx, realm, cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = opened.Destruct() })
		*rs = opened
	}
	return a, b
}

func testRealmRevocationsAcrossInstances(t *testing.T, cfg StoreConfig) {
	a, b := twoRealmInstances(t, cfg)

	s := mustCreate(t, a.store, newTestSession("alice", clock()))
	other := mustCreate(t, a.store, newTestSession("alice", clock()))
	if _, err := a.revoke(context.Background(), revocation{sid: s.ID}); err != nil {
		t.Fatal(err)
	}
	if !a.revoked.has(s.ID) {
		t.Fatal("the revoking instance must know at once")
	}
	testenv.Eventually(t, 5*time.Second, "revocation seen by the other instance", func() bool { return b.revoked.has(s.ID) })
	if b.revoked.has(other.ID) {
		t.Fatal("the other session was revoked too")
	}
	ids, err := b.revoke(context.Background(), revocation{user: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "revoked for alice", ids, []string{other.ID})
	testenv.Eventually(t, 5*time.Second, "global logout seen by the other instance", func() bool { return a.revoked.has(other.ID) })
	if lookupRealm(a.name) != b {
		t.Fatal("the registry must serve the newest realm state")
	}
}

// TestRedisPassword: the password in the URL is sent to a server that
// requires one; a wrong one is an outage (503, logged once), not a 401.
func TestRedisPassword(t *testing.T) {
	srv := testenv.StartRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port)})
	if err := admin.ConfigSet(context.Background(), "requirepass", "s3cret-pw").Err(); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	good, err := newRedisStore(fmt.Sprintf("redis://:s3cret-pw@127.0.0.1:%d/2", srv.Port), "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	s := mustCreate(t, good, newTestSession("alice", clock()))
	sameSession(t, mustGet(t, good, s.ID), s)

	core, logs := observer.New(zap.InfoLevel)
	bad, err := newRedisStore(fmt.Sprintf("redis://:not-the-pw-9x@127.0.0.1:%d/2", srv.Port), "pw", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for i := 0; i < 3; i++ {
		if _, err := bad.Get(context.Background(), s.ID); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, errOutageLogged) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if n := logs.FilterMessageSnippet("unreachable").Len(); n != 1 {
		t.Fatalf("logged %d times, want once", n)
	}
	if strings.Contains(fmt.Sprint(logs.All()), "not-the-pw-9x") {
		t.Fatal("the password appears in the log")
	}
}

// TestRealmRedisNoLeak: opening and destroying a realm on Redis (what a
// reload that changes the store does) leaves no goroutine behind and
// takes the realm out of the admin registry.
func TestRealmRedisNoLeak(t *testing.T) {
	url := testenv.RedisURL(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	realm := "leak-" + randomID()
	// one cycle first, so that lazily started runtime goroutines are counted
	rs, err := openRealm(ctx, realm, StoreConfig{Backend: "redis", URL: url}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Destruct(); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		rs, err := openRealm(ctx, realm, StoreConfig{Backend: "redis", URL: url}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if lookupRealm(realm) != rs {
			t.Fatal("realm not registered")
		}
		time.Sleep(50 * time.Millisecond) // let the feed subscribe
		if err := rs.Destruct(); err != nil {
			t.Fatal(err)
		}
	}
	if lookupRealm(realm) != nil {
		t.Fatal("a destroyed realm is still registered")
	}
	testenv.Eventually(t, 5*time.Second, "goroutines back to their number before", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
