package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestMemoryFailuresPrune: the memory counter's sweep drops what is over
// (its semantics are in the failure-counter conformance table below, shared with Redis).
func TestMemoryFailuresPrune(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	m := newMemoryFailures()
	m.now = func() time.Time { return now }
	_, _, _ = m.Reserve(ctx, "user:x", "a", time.Minute, noLimit)
	_ = m.Ban(ctx, "ip:1", 10*time.Minute)
	m.prune(now.Add(time.Minute))
	if len(m.entries) != 1 {
		t.Fatalf("prune kept %d entries, want the ban only", len(m.entries))
	}
	m.prune(now.Add(10 * time.Minute))
	if len(m.entries) != 0 {
		t.Fatalf("prune kept %d entries", len(m.entries))
	}
}

func TestMemoryFailuresBounded(t *testing.T) {
	ctx := context.Background()
	m := newMemoryFailures()
	m.max = 10
	_ = m.Ban(ctx, "user:banned", time.Hour)
	for i := 0; i < 100; i++ {
		_, _, _ = m.Reserve(ctx, fmt.Sprintf("user:%d", i), "ip", time.Hour, noLimit)
	}
	if len(m.entries) > m.max {
		t.Fatalf("%d entries, bound is %d", len(m.entries), m.max)
	}
	if left, _ := m.Banned(ctx, "user:banned"); left == 0 {
		t.Fatal("making room dropped a ban")
	}
}

// unitHandler is a provisioned-enough handler for calling checkPassword
// directly, with its logs observed.
func unitHandler(t *testing.T, users []User, slots int) (*TokenAuth, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	dir, err := newUserDirectory(users, "", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ta := &TokenAuth{
		users:     dir,
		logger:    zap.New(core),
		throttle:  (*ThrottleConfig)(nil).resolved(),
		hashSlots: newHashSlots(slots),
		realm:     &realmState{failures: newMemoryFailures()},
	}
	return ta, logs
}

func loginRequest(ip string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/authentication", nil)
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

func TestCheckPasswordBusyHashingAnswers503(t *testing.T) {
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "pw")}}, 1)
	ta.hashSlots.acquire(context.Background()) // someone else is hashing
	_, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false)
	apiErr, ok := err.(*apiError)
	if !ok || apiErr.Code != http.StatusServiceUnavailable || apiErr.retryAfter <= 0 {
		t.Fatalf("with every hashing slot taken: %v, want 503 with Retry-After", err)
	}
	if n := ta.users.compares.Load(); n != 0 {
		t.Fatalf("%d hashes computed while busy", n)
	}
	ta.hashSlots.release()
	if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false); err != nil || u == nil {
		t.Fatalf("with a free slot: %v %v", u, err)
	}
}

func TestCheckPasswordBanSkipsHashing(t *testing.T) {
	ta, logs := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "pw")}}, 2)
	for i := 0; i < 5; i++ {
		if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "wrong", false); u != nil || err != nil {
			t.Fatalf("failure %d: %v %v", i+1, u, err)
		}
	}
	before := ta.users.compares.Load()
	_, err := ta.checkPassword(loginRequest("10.0.0.9"), "alice", "pw", false)
	if apiErr, ok := err.(*apiError); !ok || apiErr.Code != http.StatusTooManyRequests {
		t.Fatalf("banned user with the right password: %v, want 429", err)
	}
	if ta.users.compares.Load() != before {
		t.Fatal("a banned login was hashed")
	}
	if logs.FilterMessage("login banned").Len() == 0 {
		t.Fatal("no `login banned` log")
	}
}

func TestThrottleOff(t *testing.T) {
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "pw")}}, 2)
	ta.throttle.Off = true
	for i := 0; i < 10; i++ {
		_, _ = ta.checkPassword(loginRequest("10.0.0.1"), "alice", "wrong", false)
	}
	if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false); err != nil || u == nil {
		t.Fatalf("throttle off still refused: %v", err)
	}
}

// The failure counter conformance table: the in-memory counter and the
// Redis one (a real redis-server) run the same steps, so the throttle
// means the same on one instance and on a cluster.

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
	// the same on the run's Sentinel setup and 3-master Cluster
	// (test.d/setup-redis-ha.sh)
	{"redis_sentinel", func(t *testing.T) (failureCounter, func(time.Duration)) {
		f := newRedisFailures(openTestRedis(t, testSentinelConfig(t), "throttle-"+randomID()))
		return f, func(d time.Duration) { shortenExpiries(t, f.store, d) }
	}},
	{"redis_cluster", func(t *testing.T) (failureCounter, func(time.Duration)) {
		f := newRedisFailures(openTestRedis(t, testClusterConfig(t), "throttle-"+randomID()))
		return f, func(d time.Duration) { shortenExpiries(t, f.store, d) }
	}},
}

func eachCounter(t *testing.T, fn func(t *testing.T, c failureCounter, wait func(time.Duration))) {
	for _, kind := range counterKinds {
		t.Run(kind.name, func(t *testing.T) {
			c, wait := kind.open(t)
			fn(t, c, wait)
		})
	}
}

// counterStep is one call of a conformance case: fail (a reservation
// under no limit; want the count), reserve (under limit want, wait d: 0
// when counted), release, forgive, ban (for d), banned (want left, d), or
// wait (d passes).
type counterStep struct {
	op       string
	key, src string
	d        time.Duration
	want     int
}

func stepFail(key, src string, want int) counterStep {
	return counterStep{op: "fail", key: key, src: src, want: want}
}
func stepReserve(key, src string, limit int, wait time.Duration) counterStep {
	return counterStep{op: "reserve", key: key, src: src, want: limit, d: wait}
}
func stepRelease(key, src string) counterStep { return counterStep{op: "release", key: key, src: src} }

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
		stepBanned("user:x", time.Minute), stepWait(time.Minute), stepFail("user:x", "a", 1),
	}},
	{"a ban outlasts the window", []counterStep{
		stepFail("user:x", "a", 1), stepBan("user:x", 10*time.Minute), stepWait(5 * time.Minute),
		stepReserve("user:x", "a", noLimit, 5*time.Minute), stepBanned("user:x", 5*time.Minute),
	}},
	{"a new ban replaces the old", []counterStep{
		stepBan("user:x", 10*time.Minute), stepWait(8 * time.Minute), stepBan("user:x", 10*time.Minute),
		stepWait(5 * time.Minute), stepBanned("user:x", 5*time.Minute),
	}},
	{"a zero ban only forgets", []counterStep{
		stepFail("user:x", "a", 1), stepBan("user:x", 0), stepBanned("user:x", 0), stepFail("user:x", "a", 1),
	}},
	{"a full window refuses and counts nothing", []counterStep{
		stepReserve("user:x", "a", 2, 0), stepWait(10 * time.Second), stepReserve("user:x", "b", 2, 0),
		stepReserve("user:x", "a", 2, 50*time.Second), stepReserve("user:x", "c", 2, 50*time.Second),
		stepFail("user:x", "a", 3), // under a higher limit: the refusals counted nothing
	}},
	{"a ban refuses and counts nothing", []counterStep{
		stepBan("user:x", 10*time.Minute), stepReserve("user:x", "a", 5, 10*time.Minute),
		stepWait(10 * time.Minute), stepFail("user:x", "a", 1),
	}},
	{"the window ends and reservations start again", []counterStep{
		stepReserve("user:x", "a", 1, 0), stepReserve("user:x", "a", 1, time.Minute),
		stepWait(time.Minute), stepReserve("user:x", "a", 1, 0),
	}},
	{"release takes back one reservation", []counterStep{
		stepFail("user:x", "a", 1), stepFail("user:x", "a", 2), stepFail("user:x", "b", 3),
		stepRelease("user:x", "a"), stepFail("user:x", "b", 3),
		stepRelease("user:x", "a"), stepRelease("user:x", "a"), stepFail("user:x", "c", 3),
	}},
	{"releasing what is not there is harmless", []counterStep{
		stepRelease("user:nobody", "a"), stepFail("user:x", "a", 1), stepRelease("user:x", "zzz"),
		stepForgive("user:x", "a"), stepRelease("user:x", "a"), stepFail("user:x", "a", 1),
	}},
}

// noLimit is the limit of a fail step: it counts whatever came before.
const noLimit = 1 << 30

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
						n, wait, err := c.Reserve(ctx, s.key, s.src, counterWindow, noLimit)
						if err != nil || n != s.want || wait != 0 {
							t.Fatalf("%s: %d (wait %v), %v; want %d", where, n, wait, err, s.want)
						}
					case "reserve":
						_, wait, err := c.Reserve(ctx, s.key, s.src, counterWindow, s.want)
						ok := wait == s.d || (s.d > banSlack && wait <= s.d && wait > s.d-banSlack)
						if err != nil || !ok {
							t.Fatalf("%s: wait %v, %v; want %v", where, wait, err, s.d)
						}
					case "release":
						if err := c.Release(ctx, s.key, s.src); err != nil {
							t.Fatalf("%s: %v", where, err)
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
				counts[i], _, errs[i] = c.Reserve(ctx, "user:x", fmt.Sprintf("10.0.0.%d", i%7), counterWindow, noLimit)
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

// TestFailureCounterConcurrentReservations: of a burst of concurrent
// reservations under a limit, exactly limit are counted and the rest are
// refused with a wait: checking and counting are one step.
func TestFailureCounterConcurrentReservations(t *testing.T) {
	eachCounter(t, func(t *testing.T, c failureCounter, _ func(time.Duration)) {
		const n, limit = 50, 5
		ctx := context.Background()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var got []int
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				k, wait, err := c.Reserve(ctx, "user:x", fmt.Sprintf("10.0.0.%d", i%3), counterWindow, limit)
				errs[i] = err
				if err == nil && wait == 0 {
					mu.Lock()
					got = append(got, k)
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		sort.Ints(got)
		if fmt.Sprint(got) != "[1 2 3 4 5]" {
			t.Fatalf("counted reservations %v, want 1..%d each once", got, limit)
		}
	})
}
