package tokenauth

// Failover tests: a private Sentinel setup and a private 3-master Cluster
// (test.d/redis-ha.sh, so that failing a master over disturbs no other
// test), a handler provisioned as Caddy would, and a bounded steady load of
// refreshes and guarded requests while the realm's master fails over.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// recoveryLimit is the requirement: login and refresh work again within
// 10 s of a failover, with no operator action.
const recoveryLimit = 10 * time.Second

// serveAsync is serve for goroutines other than the test's: it reports
// ServeHTTP's error instead of failing the test.
func serveAsync(ta *TokenAuth, method, path, body string, header ...string) (*httptest.ResponseRecorder, error) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	return w, ta.ServeHTTP(w, r, next)
}

// failoverSession is one client refreshing its session in a loop.
type failoverSession struct {
	mu              sync.Mutex
	access, refresh string
}

func (s *failoverSession) tokens() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access, s.refresh
}

// refreshOnce presents the session's refresh token and keeps the new pair.
func (s *failoverSession) refreshOnce(ta *TokenAuth) (int, error) {
	_, rt := s.tokens()
	w, err := serveAsync(ta, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+rt+`"}`)
	if err != nil {
		return 0, err
	}
	if w.Code == http.StatusCreated {
		var pair struct{ AccessToken, RefreshToken string }
		if err := json.Unmarshal(w.Body.Bytes(), &pair); err != nil {
			return 0, err
		}
		s.mu.Lock()
		s.access, s.refresh = pair.AccessToken, pair.RefreshToken
		s.mu.Unlock()
	}
	return w.Code, nil
}

// statusCounts counts the answers of a kind of request.
type statusCounts struct {
	mu sync.Mutex
	m  map[int]int
}

func (c *statusCounts) add(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]int{}
	}
	c.m[code]++
}

func (c *statusCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.m)
}

// only reports whether every answer was one of codes.
func (c *statusCounts) only(codes ...int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for code := range c.m {
		ok := false
		for _, want := range codes {
			ok = ok || code == want
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestRedisSentinelFailover: SENTINEL FAILOVER under load.
func TestRedisSentinelFailover(t *testing.T) {
	ha := testenv.StartRedisHA(t, "sentinel")
	testFailover(t, ha, sentinelFailover)
}

// TestRedisClusterFailover: CLUSTER FAILOVER on the replica of the realm's
// master under load.
func TestRedisClusterFailover(t *testing.T) {
	ha := testenv.StartRedisHA(t, "cluster")
	testFailover(t, ha, clusterFailover)
}

// TestRedisSentinelMasterKilled: the master dies (SIGKILL) under load; the
// sentinels elect its replica, and writes it had not replicated are lost.
func TestRedisSentinelMasterKilled(t *testing.T) {
	ha := testenv.StartRedisHA(t, "sentinel")
	testFailover(t, ha, func(t *testing.T, ha map[string]string, prefix string) (string, string) {
		return sentinelWait(t, ha, func(master string) { killRedis(t, master) })
	})
}

// TestRedisClusterMasterKilled: the master of the realm's slot dies
// (SIGKILL) under load; the cluster promotes its replica.
func TestRedisClusterMasterKilled(t *testing.T) {
	ha := testenv.StartRedisHA(t, "cluster")
	testFailover(t, ha, func(t *testing.T, ha map[string]string, prefix string) (string, string) {
		return clusterWait(t, ha, prefix, func(master string, _ *redis.Client) { killRedis(t, master) })
	})
}

// killRedis kills the redis-server at addr at once, as a crash would.
func killRedis(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid == 0 {
		t.Fatalf("no process_id from %s", addr)
	}
	// os.Process.Kill is SIGKILL on Unix, and builds everywhere (GOOS=windows go vet)
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// testFailover: sessions refresh in a loop and guarded requests run while
// failover moves the realm's master. Afterwards every session refreshes
// (none was revoked as reuse: a refresh is answered 201 or 503, never 401),
// login works again within recoveryLimit, no guarded request failed, and
// the store logs the new master.
func testFailover(t *testing.T, ha map[string]string, failover func(t *testing.T, ha map[string]string, prefix string) (from, to string)) {
	realm := "failover-" + randomID()[:8]
	cfg := haConfig(ha)
	ta := &TokenAuth{
		Realm:      realm,
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: testSecret},
		Users:      []User{{ID: "alice", Password: testenv.Hash(t, "pw")}},
		Store:      &cfg,
	}
	provisionInProcess(t, ta)
	// a second instance's store and revocation feed, whose log should say
	// where the realm's keys are after the failover
	core, logs := observer.New(zap.InfoLevel)
	watcher, err := cfg.openRedisHA(realm, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	follow(t, watcher)

	sessions := make([]*failoverSession, 8)
	for i := range sessions {
		at, rt := loginInProcess(t, ta, "alice", "pw")
		sessions[i] = &failoverSession{access: at, refresh: rt}
	}

	var refreshes, guarded statusCounts
	var errs []error
	var errMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
	defer stopLoad() // before the handler is cleaned up, when the test fails early
	loop := func(every time.Duration, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// bounded: the test stops it, and it ends by itself after a minute
			for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(every) {
				select {
				case <-stop:
					return
				default:
				}
				if err := fn(); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
				}
			}
		}()
	}
	for _, s := range sessions {
		loop(20*time.Millisecond, func() error {
			code, err := s.refreshOnce(ta)
			refreshes.add(code)
			return err
		})
		loop(10*time.Millisecond, func() error {
			at, _ := s.tokens()
			w, err := serveAsync(ta, "GET", "/api/thing", "", "Authorization", "Bearer "+at)
			guarded.add(w.Code)
			return err
		})
	}

	time.Sleep(500 * time.Millisecond) // steady load before the failover
	started := time.Now()
	from, to := failover(t, ha, watcher.prefix)
	t.Logf("master moved from %s to %s in %s", from, to, time.Since(started).Round(time.Millisecond))
	var loginBack time.Duration
	for {
		w, err := serveAsync(ta, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"pw"}`)
		if err == nil && w.Code == http.StatusCreated {
			loginBack = time.Since(started)
			break
		}
		if err == nil && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("login during the failover: %d %s (want 201, or 503 while the store is away)", w.Code, w.Body)
		}
		if time.Since(started) > recoveryLimit {
			t.Fatalf("login not back within %s of the failover", recoveryLimit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the load goes on, on the new master
	stopLoad()
	t.Logf("login back after %s; refreshes %s; guarded %s", loginBack.Round(time.Millisecond), &refreshes, &guarded)

	if len(errs) > 0 {
		t.Fatalf("ServeHTTP failed: %v", errs[0])
	}
	if !refreshes.only(http.StatusCreated, http.StatusServiceUnavailable) {
		t.Fatalf("refreshes answered %s: only 201, or 503 while the store was away, are allowed (never 401)", &refreshes)
	}
	if !guarded.only(http.StatusTeapot) {
		t.Fatalf("guarded requests answered %s: every one must pass", &guarded)
	}
	for i, s := range sessions {
		testenv.Eventually(t, recoveryLimit, fmt.Sprintf("session %d refreshes after the failover", i), func() bool {
			code, err := s.refreshOnce(ta)
			if err != nil || (code != http.StatusCreated && code != http.StatusServiceUnavailable) {
				t.Fatalf("session %d after the failover: %d %v", i, code, err)
			}
			return code == http.StatusCreated
		})
	}
	testenv.Eventually(t, recoveryLimit, "the store logs its new master", func() bool {
		return logs.FilterMessageSnippet("now served by "+to).Len() == 1
	})
}

// sentinelFailover asks a sentinel to fail the master over.
func sentinelFailover(t *testing.T, ha map[string]string, _ string) (from, to string) {
	return sentinelWait(t, ha, func(string) {
		sentinel := redis.NewSentinelClient(&redis.Options{Addr: strings.Split(ha["REDIS_SENTINEL_ADDRS"], ",")[0]})
		defer sentinel.Close()
		if err := sentinel.Failover(context.Background(), ha["REDIS_SENTINEL_MASTER"]).Err(); err != nil {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	})
}

// sentinelWait does something to the master and waits until the sentinels
// name another one.
func sentinelWait(t *testing.T, ha map[string]string, do func(master string)) (from, to string) {
	master := ha["REDIS_SENTINEL_MASTER"]
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: strings.Split(ha["REDIS_SENTINEL_ADDRS"], ",")[0]})
	defer sentinel.Close()
	ctx := context.Background()
	current := func() string {
		addr, err := sentinel.GetMasterAddrByName(ctx, master).Result()
		if err != nil {
			t.Fatal(err)
		}
		return addr[0] + ":" + addr[1]
	}
	from = current()
	do(from)
	testenv.Eventually(t, recoveryLimit, "the sentinels elect a new master", func() bool { to = current(); return to != from })
	return from, to
}

// clusterFailover sends CLUSTER FAILOVER to the replica of the master that
// holds the realm's slot.
func clusterFailover(t *testing.T, ha map[string]string, prefix string) (from, to string) {
	return clusterWait(t, ha, prefix, func(_ string, replica *redis.Client) {
		if err := replica.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
			t.Fatalf("CLUSTER FAILOVER: %v", err)
		}
	})
}

// clusterWait does something to the master of the realm's slot (or its
// replica) and waits until the replica has taken over.
func clusterWait(t *testing.T, ha map[string]string, prefix string, do func(master string, replica *redis.Client)) (from, to string) {
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(ha["REDIS_CLUSTER_ADDRS"], ",")})
	defer cc.Close()
	slot, err := cc.ClusterKeySlot(ctx, prefix).Result()
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 1 {
			from, to = r.Nodes[0].Addr, r.Nodes[1].Addr
		}
	}
	if to == "" {
		t.Fatalf("no replica serves slot %d: %+v", slot, ranges)
	}
	replica := redis.NewClient(&redis.Options{Addr: to})
	defer replica.Close()
	do(from, replica)
	testenv.Eventually(t, recoveryLimit, "the replica takes over", func() bool {
		info, err := replica.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "role:master")
	})
	return from, to
}
