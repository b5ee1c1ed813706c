package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// openRedisFailures is a Redis counter in a realm of its own.
func openRedisFailures(t *testing.T, url string, logger *zap.Logger) *redisFailures {
	t.Helper()
	return newRedisFailures(openTestRedisLogged(t, StoreConfig{Backend: "redis", URL: url}, "throttle-"+randomID(), logger))
}

// shortenExpiries makes every key of the store's realm expire d sooner,
// deleting those whose time is up: to the counter, d has passed.
func shortenExpiries(t *testing.T, st *redisStore, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	keys, err := realmKeys(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		ttl, err := st.client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl < 0 {
			t.Fatalf("key %q never expires (PTTL %d)", k, ttl)
		}
		if ttl <= d {
			err = st.client.Del(ctx, k).Err()
		} else {
			err = st.client.PExpire(ctx, k, ttl-d).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisFailuresExpireByThemselves: the Redis counter's keys carry
// expiries (nothing to sweep) and really end with the window and the ban.
func TestRedisFailuresExpireByThemselves(t *testing.T) {
	f := openRedisFailures(t, testenv.RedisURL(t), nil)
	ctx := context.Background()
	if _, _, err := f.Reserve(ctx, "user:x", "a", 200*time.Millisecond, noLimit); err != nil {
		t.Fatal(err)
	}
	if err := f.Ban(ctx, "ip:a", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	keys, err := realmKeys(ctx, f.store)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, k := range keys {
		if ttl := f.store.client.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Fatalf("%s has no expiry (%v)", k, ttl)
		}
	}
	testenv.Eventually(t, 10*time.Second, "window and ban over", func() bool {
		left, err := f.Banned(ctx, "ip:a")
		n, _ := f.store.client.Exists(ctx, keys...).Result()
		return err == nil && left == 0 && n == 0
	})
	if n, _, err := f.Reserve(ctx, "user:x", "a", time.Minute, noLimit); err != nil || n != 1 {
		t.Fatalf("a failure after the window: %d, %v", n, err)
	}
}

// TestRedisFailuresOutage: with Redis gone every call fails with
// ErrStoreUnavailable (so the login is answered 503), the outage is logged
// once, and the counter works again when Redis is back.
func TestRedisFailuresOutage(t *testing.T) {
	srv := testenv.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	f := openRedisFailures(t, srv.URL, zap.New(core))
	ctx := context.Background()
	if _, _, err := f.Reserve(ctx, "user:x", "a", time.Minute, noLimit); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	ops := map[string]func() error{
		"Reserve": func() error { _, _, err := f.Reserve(ctx, "user:x", "a", time.Minute, noLimit); return err },
		"Release": func() error { return f.Release(ctx, "user:x", "a") },
		"Forgive": func() error { return f.Forgive(ctx, "user:x", "a") },
		"Ban":     func() error { return f.Ban(ctx, "user:x", time.Minute) },
		"Banned":  func() error { _, err := f.Banned(ctx, "user:x"); return err },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, errOutageLogged) {
			t.Fatalf("%s while Redis is down: %v, want ErrStoreUnavailable", name, err)
		}
	}
	if n := logs.FilterMessageSnippet("unreachable").Len(); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}

	srv.Start()
	testenv.Eventually(t, 10*time.Second, "counter usable again", func() bool {
		_, err := f.Banned(ctx, "user:x")
		return err == nil
	})
	if n, _, err := f.Reserve(ctx, "user:x", "a", time.Minute, noLimit); err != nil || n != 1 {
		t.Fatalf("after the restart (no persistence): %d, %v", n, err)
	}
	if n := logs.FilterMessageSnippet("reachable again").Len(); n != 1 {
		t.Fatalf("recovery logged %d times, want once", n)
	}
}

// TestCheckPasswordRedisDown: a login while the throttle's Redis is down
// is an unavailable store (503), never a wrong password (401), whatever
// password it sends, and no password is verified.
func TestCheckPasswordRedisDown(t *testing.T) {
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "alice-pw")}}, 1)
	st, err := newRedisStore(fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)), "down", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ta.realm.failures = newRedisFailures(st)
	for _, pw := range []string{"alice-pw", "wrong"} {
		user, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", pw, false)
		if user != nil || !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("password %q with Redis down: %v, %v; want ErrStoreUnavailable", pw, user, err)
		}
		if !strings.Contains(err.Error(), "throttle") {
			t.Fatalf("error does not name the throttle: %v", err)
		}
	}
	if n := ta.users.compares.Load(); n != 0 {
		t.Fatalf("%d passwords verified while the throttle could not be read", n)
	}
}
