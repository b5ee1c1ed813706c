package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestThrottleClusterEndToEnd: two Caddy processes sharing one
// redis-server count failed logins together: failures spread over both
// ban the client IP and the user at both, a success at one forgives at
// the other, and while Redis is down logins are answered 503, never 401.
func TestThrottleClusterEndToEnd(t *testing.T) {
	srv := testenv.StartRedis(t) // its own server: this test stops it
	site := fmt.Sprintf(`
	token_auth /api/* {
		realm throttle-%s
		signing_key hs256 %s
		store redis {env.TEST_TOKEN_AUTH_REDIS_URL}
		throttle 5 10m 10m
		user alice %s
		user bob %s
		user carol %s
	}
	respond /api/* "hello {http.auth.user.id}" 200
`, rand.Text()[:8], e2eSecret, testenv.Hash(t, "alice-pw"), testenv.Hash(t, "bob-pw"), testenv.Hash(t, "carol-pw"))
	opts := caddyOptions{Env: []string{"TEST_TOKEN_AUTH_REDIS_URL=" + srv.URL}}
	a := startCaddy(t, throttleGlobals, site, opts)
	b := startCaddy(t, throttleGlobals, site, opts)
	nodes := []*caddyProc{a, b}
	banned := func(what string, p *caddyProc, r apiResponse) {
		t.Helper()
		ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.Status != http.StatusTooManyRequests || err != nil || ra <= 0 || ra > 600 {
			t.Fatalf("%s at %s: %d Retry-After %q %s", what, p.BaseURL, r.Status, r.Header.Get("Retry-After"), r.Raw)
		}
	}

	// Per client IP: three failures at A and two at B ban the IP at both,
	// even for a right password; another IP logs the same user in.
	for i := 0; i < 5; i++ {
		if r := nodes[i%2].loginFrom("10.1.0.1", fmt.Sprintf("nobody%d", i), "x"); r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	for _, p := range nodes {
		banned("banned IP, right password", p, p.loginFrom("10.1.0.1", "alice", "alice-pw"))
	}
	if r := b.loginFrom("10.1.0.2", "alice", "alice-pw"); r.Status != http.StatusCreated {
		t.Fatalf("another IP: %d %s", r.Status, r.Raw)
	}

	// Per user: five failures from five IPs, over both instances, ban the
	// user at both.
	for i := 0; i < 5; i++ {
		if r := nodes[i%2].loginFrom(fmt.Sprintf("10.2.0.%d", i+1), "bob", "guess"); r.Status != http.StatusUnauthorized {
			t.Fatalf("bob's failure %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	for _, p := range nodes {
		banned("banned user from a fresh IP", p, p.loginFrom("10.2.0.99", "bob", "bob-pw"))
	}

	// A success at B forgives the failures its IP made at A.
	for i := 0; i < 4; i++ {
		a.loginFrom("10.3.0.1", "carol", "typo")
	}
	if r := b.loginFrom("10.3.0.1", "carol", "carol-pw"); r.Status != http.StatusCreated {
		t.Fatalf("carol after four typos: %d %s", r.Status, r.Raw)
	}
	a.loginFrom("10.3.0.1", "carol", "typo")
	if r := a.loginFrom("10.3.0.1", "carol", "carol-pw"); r.Status != http.StatusCreated {
		t.Fatalf("carol's success at B did not forgive her typos at A: %d %s", r.Status, r.Raw)
	}

	// Redis down: the throttle cannot be read, so every login is 503
	// (fail closed), whatever its password: never a 401, never a crash.
	srv.Stop()
	for _, p := range nodes {
		for _, pw := range []string{"alice-pw", "wrong", "wrong"} {
			r := p.loginFrom("10.4.0.1", "alice", pw)
			if r.Status != http.StatusServiceUnavailable || r.str("name") != "Unavailable" || r.Header.Get("Retry-After") == "" {
				t.Fatalf("login (%s) while Redis is down at %s: %d %s", pw, p.BaseURL, r.Status, r.Raw)
			}
		}
		if n := strings.Count(p.Logs(), "session store unreachable"); n != 1 {
			t.Fatalf("outage logged %d times at %s, want once:\n%s", n, p.BaseURL, p.Logs())
		}
	}
	srv.Start()
	for _, p := range nodes {
		testenv.Eventually(t, 15*time.Second, "login after Redis is back", func() bool {
			return p.loginFrom("10.4.0.1", "alice", "alice-pw").Status == http.StatusCreated
		})
	}
}

// TestThrottleClusterConcurrentBurst: 50 concurrent wrong passwords for one
// user, spread over two Caddy processes sharing Redis, get at most 5
// password verifications in all.
func TestThrottleClusterConcurrentBurst(t *testing.T) {
	url := testenv.RedisURL(t)
	site := burstSite(t, "store redis {env.TEST_TOKEN_AUTH_REDIS_URL}")
	opts := caddyOptions{Env: []string{"TEST_TOKEN_AUTH_REDIS_URL=" + url}}
	nodes := []*caddyProc{startCaddy(t, throttleGlobals, site, opts), startCaddy(t, throttleGlobals, site, opts)}
	got := loginBurst(t, nodes, 50, "alice", "guess", "10.8.0.1")
	checkBurstThrottled(t, nodes, got, 5)
}
