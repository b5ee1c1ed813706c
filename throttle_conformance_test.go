package tokenauth

// The failure counter conformance table: the in-memory counter and the
// Redis one (a real redis-server) run the same steps, so the throttle
// means the same on one instance and on a cluster.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// counterKinds opens a fresh, empty counter of each kind with a way to
// let time pass. Memory gets a fake clock. Redis keeps time by its own
// clock through key expiry alone, so letting time pass is shortening
// every key's expiry by that much (TestRedisFailuresExpireByThemselves
// shows the real expiry does the same).
var counterKinds = []struct {
	name string
	open func(t *testing.T) (failureCounter, func(time.Duration))
}{
	{"memory", func(t *testing.T) (failureCounter, func(time.Duration)) {
		now := time.Unix(1_000_000, 0)
		m := newMemoryFailures()
		m.now = func() time.Time { return now }
		return m, func(d time.Duration) { now = now.Add(d) }
	}},
	{"redis", func(t *testing.T) (failureCounter, func(time.Duration)) {
		f := openRedisFailures(t, testenv.RedisURL(t), nil)
		return f, func(d time.Duration) { shortenExpiries(t, f.store, d) }
	}},
}

// openRedisFailures is a Redis counter in a realm of its own.
func openRedisFailures(t *testing.T, url string, logger *zap.Logger) *redisFailures {
	t.Helper()
	st, err := newRedisStore(url, "throttle-"+randomID(), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// leave the shared server as found (the keys would expire anyway)
		ctx := context.Background()
		if keys, err := st.client.Keys(ctx, st.prefix+"*").Result(); err == nil && len(keys) > 0 {
			st.client.Del(ctx, keys...)
		}
		st.Close()
	})
	return newRedisFailures(st)
}

// shortenExpiries makes every key of the store's realm expire d sooner,
// deleting those whose time is up: to the counter, d has passed.
func shortenExpiries(t *testing.T, st *redisStore, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	keys, err := st.client.Keys(ctx, st.prefix+"*").Result()
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

func eachCounter(t *testing.T, fn func(t *testing.T, c failureCounter, wait func(time.Duration))) {
	for _, kind := range counterKinds {
		t.Run(kind.name, func(t *testing.T) {
			c, wait := kind.open(t)
			fn(t, c, wait)
		})
	}
}

// counterStep is one call of a conformance case: fail (want the count),
// forgive, ban (for d), banned (want left, d), or wait (d passes).
type counterStep struct {
	op       string
	key, src string
	d        time.Duration
	want     int
}

func stepFail(key, src string, want int) counterStep {
	return counterStep{op: "fail", key: key, src: src, want: want}
}
func stepForgive(key, src string) counterStep { return counterStep{op: "forgive", key: key, src: src} }
func stepBan(key string, d time.Duration) counterStep {
	return counterStep{op: "ban", key: key, d: d}
}
func stepBanned(key string, left time.Duration) counterStep {
	return counterStep{op: "banned", key: key, d: left}
}
func stepWait(d time.Duration) counterStep { return counterStep{op: "wait", d: d} }

// counterWindow is the window of every fail step.
const counterWindow = time.Minute

var counterCases = []struct {
	name  string
	steps []counterStep
}{
	{"every source counts", []counterStep{
		stepFail("user:x", "a", 1), stepFail("user:x", "a", 2), stepFail("user:x", "b", 3),
	}},
	{"keys are counted apart", []counterStep{
		stepFail("user:x", "a", 1), stepFail("ip:a", "user:x", 1), stepFail("user:y", "a", 1), stepFail("user:x", "a", 2),
	}},
	{"forgive forgets one source", []counterStep{
		stepFail("user:x", "a", 1), stepFail("user:x", "a", 2), stepFail("user:x", "b", 3),
		stepForgive("user:x", "a"), stepFail("user:x", "b", 2),
	}},
	{"forgiving an unknown key or source is harmless", []counterStep{
		stepForgive("user:nobody", "a"), stepFail("user:x", "a", 1), stepForgive("user:x", "zzz"), stepFail("user:x", "a", 2),
		stepBanned("user:nobody", 0),
	}},
	{"the window starts at the first failure", []counterStep{
		stepFail("user:x", "a", 1), stepWait(40 * time.Second), stepFail("user:x", "b", 2),
		stepWait(20 * time.Second), stepFail("user:x", "b", 1), // the first failure's window is over
		stepWait(59 * time.Second), stepFail("user:x", "a", 2),
	}},
	{"forgiving every source keeps the window", []counterStep{
		stepFail("user:x", "a", 1), stepWait(40 * time.Second), stepForgive("user:x", "a"),
		stepFail("user:x", "a", 1), stepWait(20 * time.Second), stepFail("user:x", "a", 1),
	}},
	{"a ban lasts its time", []counterStep{
		stepBanned("ip:a", 0), stepBan("ip:a", 10*time.Minute), stepBanned("ip:a", 10*time.Minute),
		stepWait(4 * time.Minute), stepBanned("ip:a", 6*time.Minute), stepBanned("ip:b", 0),
		stepWait(6 * time.Minute), stepBanned("ip:a", 0),
	}},
	{"a ban forgets the failures", []counterStep{
		stepFail("user:x", "a", 1), stepFail("user:x", "b", 2), stepBan("user:x", time.Minute),
		stepFail("user:x", "a", 1), stepBanned("user:x", time.Minute),
	}},
	{"a ban outlasts the window", []counterStep{
		stepFail("user:x", "a", 1), stepBan("user:x", 10*time.Minute), stepWait(5 * time.Minute),
		stepFail("user:x", "a", 1), stepBanned("user:x", 5*time.Minute),
	}},
	{"a new ban replaces the old", []counterStep{
		stepBan("user:x", 10*time.Minute), stepWait(8 * time.Minute), stepBan("user:x", 10*time.Minute),
		stepWait(5 * time.Minute), stepBanned("user:x", 5*time.Minute),
	}},
	{"a zero ban only forgets", []counterStep{
		stepFail("user:x", "a", 1), stepBan("user:x", 0), stepBanned("user:x", 0), stepFail("user:x", "a", 1),
	}},
}

// banSlack is how much sooner a ban may end than asked: Redis's clock runs
// while the test does.
const banSlack = 5 * time.Second

func TestFailureCounterConformance(t *testing.T) {
	for _, tc := range counterCases {
		t.Run(tc.name, func(t *testing.T) {
			eachCounter(t, func(t *testing.T, c failureCounter, pass func(time.Duration)) {
				ctx := context.Background()
				for i, s := range tc.steps {
					where := fmt.Sprintf("step %d (%s %s %s %v)", i+1, s.op, s.key, s.src, s.d)
					switch s.op {
					case "fail":
						n, err := c.Fail(ctx, s.key, s.src, counterWindow)
						if err != nil || n != s.want {
							t.Fatalf("%s: %d, %v; want %d", where, n, err, s.want)
						}
					case "forgive":
						if err := c.Forgive(ctx, s.key, s.src); err != nil {
							t.Fatalf("%s: %v", where, err)
						}
					case "ban":
						if err := c.Ban(ctx, s.key, s.d); err != nil {
							t.Fatalf("%s: %v", where, err)
						}
					case "banned":
						left, err := c.Banned(ctx, s.key)
						ok := left == s.d || (s.d > banSlack && left <= s.d && left > s.d-banSlack)
						if err != nil || !ok {
							t.Fatalf("%s: %v left, %v", where, left, err)
						}
					case "wait":
						pass(s.d)
					}
				}
			})
		})
	}
}

// TestFailureCounterConcurrent: failures counted at once are each counted
// once (the count is atomic), and each sees a different count.
func TestFailureCounterConcurrent(t *testing.T) {
	eachCounter(t, func(t *testing.T, c failureCounter, _ func(time.Duration)) {
		const n = 40
		ctx := context.Background()
		counts := make([]int, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				counts[i], errs[i] = c.Fail(ctx, "user:x", fmt.Sprintf("10.0.0.%d", i%7), counterWindow)
			}(i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		sort.Ints(counts)
		for i, got := range counts {
			if got != i+1 {
				t.Fatalf("counts %v, want 1..%d each once", counts, n)
			}
		}
	})
}

// TestRedisFailuresExpireByThemselves: the Redis counter's keys carry
// expiries (nothing to sweep) and really end with the window and the ban.
func TestRedisFailuresExpireByThemselves(t *testing.T) {
	f := openRedisFailures(t, testenv.RedisURL(t), nil)
	ctx := context.Background()
	if _, err := f.Fail(ctx, "user:x", "a", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := f.Ban(ctx, "ip:a", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	keys, err := f.store.client.Keys(ctx, f.store.prefix+"*").Result()
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
	if n, err := f.Fail(ctx, "user:x", "a", time.Minute); err != nil || n != 1 {
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
	if _, err := f.Fail(ctx, "user:x", "a", time.Minute); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	ops := map[string]func() error{
		"Fail":    func() error { _, err := f.Fail(ctx, "user:x", "a", time.Minute); return err },
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
	if n, err := f.Fail(ctx, "user:x", "a", time.Minute); err != nil || n != 1 {
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
