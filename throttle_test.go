package tokenauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestMemoryFailuresPrune: the memory counter's sweep drops what is over
// (its semantics are in throttle_conformance_test.go, shared with Redis).
func TestMemoryFailuresPrune(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	m := newMemoryFailures()
	m.now = func() time.Time { return now }
	_, _ = m.Fail(ctx, "user:x", "a", time.Minute)
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
		_, _ = m.Fail(ctx, fmt.Sprintf("user:%d", i), "ip", time.Hour)
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
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testHash(t, "pw")}}, 1)
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
	ta, logs := unitHandler(t, []User{{ID: "alice", Password: testHash(t, "pw")}}, 2)
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
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testHash(t, "pw")}}, 2)
	ta.throttle.Off = true
	for i := 0; i < 10; i++ {
		_, _ = ta.checkPassword(loginRequest("10.0.0.1"), "alice", "wrong", false)
	}
	if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false); err != nil || u == nil {
		t.Fatalf("throttle off still refused: %v", err)
	}
}

func TestThrottleCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ThrottleConfig
		hashes  int
		wantErr string
	}{
		{in: "throttle 3 1m 2h", want: ThrottleConfig{Failures: 3, Window: caddy.Duration(time.Minute), Ban: caddy.Duration(2 * time.Hour)}},
		{in: "throttle off", want: ThrottleConfig{Off: true}},
		{in: "max_concurrent_hashes 3", hashes: 3},
		{in: "throttle 3 1m", wantErr: "Testfile:2"},
		{in: "throttle x 1m 1m", wantErr: "failures must be a positive"},
		{in: "throttle 0 1m 1m", wantErr: "failures must be a positive"},
		{in: "throttle 3 soon 1m", wantErr: `invalid duration "soon"`},
		{in: "throttle 3 1m -1m", wantErr: `invalid duration "-1m"`},
		{in: "max_concurrent_hashes 0", wantErr: "Testfile:2"},
		{in: "max_concurrent_hashes 2 3", wantErr: "Testfile:2"},
	} {
		ta := new(TokenAuth)
		err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + tc.in + "\n}"))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if tc.hashes != 0 {
			if ta.MaxConcurrentHashes != tc.hashes {
				t.Errorf("%q: max_concurrent_hashes %d", tc.in, ta.MaxConcurrentHashes)
			}
			continue
		}
		if ta.Throttle == nil || *ta.Throttle != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, ta.Throttle, tc.want)
		}
	}
}

// throttleSite is a site behind a trusted proxy, so tests can speak for
// several client IPs with X-Forwarded-For.
const throttleGlobals = `servers {
		trusted_proxies static 127.0.0.0/8
	}`

func throttleSite(t *testing.T) string {
	return fmt.Sprintf(`token_auth /private/* {
		signing_key hs256 %s
		store memory
		throttle 5 10m 10m
		user alice %s
		user bob %s
		user carol %s
		user dave %s
	}
	respond "ok"`, strings.Repeat("s", 32), testHash(t, "alice-pw"), testHash(t, "bob-pw"), testHash(t, "carol-pw"), testHash(t, "dave-pw"))
}

func (p *caddyProc) loginFrom(ip, user, password string) apiResponse {
	p.t.Helper()
	return p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": user, "password": password}, "X-Forwarded-For", ip)
}

func TestThrottleEndToEnd(t *testing.T) {
	site := throttleSite(t)
	p := startCaddy(t, throttleGlobals, site)

	// Per client IP: five failures against made-up users ban the IP, even
	// for a right password; another IP logs the same user in.
	for i := 0; i < 5; i++ {
		if r := p.loginFrom("10.0.0.1", fmt.Sprintf("nobody%d", i), "x"); r.Status != 401 {
			t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	r := p.loginFrom("10.0.0.1", "alice", "alice-pw")
	if r.Status != 429 || r.str("name") != "TooManyRequests" {
		t.Fatalf("banned IP, right password: %d %s", r.Status, r.Raw)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra <= 0 || ra > 600 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if r := p.loginFrom("10.0.0.2", "alice", "alice-pw"); r.Status != 201 {
		t.Fatalf("another IP: %d %s", r.Status, r.Raw)
	}

	// Per user: five failures from five IPs ban the user everywhere.
	for i := 0; i < 5; i++ {
		p.loginFrom(fmt.Sprintf("10.0.1.%d", i+1), "bob", "guess")
	}
	if r := p.loginFrom("10.0.1.99", "bob", "bob-pw"); r.Status != 429 {
		t.Fatalf("banned user from a fresh IP: %d %s", r.Status, r.Raw)
	}

	// A success forgives the failures it explains (its own IP's against
	// its user), not another IP's.
	for i := 0; i < 4; i++ {
		p.loginFrom("10.0.3.1", "carol", "guess")
	}
	if r := p.loginFrom("10.0.3.2", "carol", "carol-pw"); r.Status != 201 {
		t.Fatalf("carol from her own IP: %d %s", r.Status, r.Raw)
	}
	p.loginFrom("10.0.3.1", "carol", "guess") // the fifth failure against carol
	if r := p.loginFrom("10.0.3.2", "carol", "carol-pw"); r.Status != 429 {
		t.Fatalf("carol's success reset the other IP's count: %d %s", r.Status, r.Raw)
	}
	for i := 0; i < 4; i++ {
		p.loginFrom("10.0.4.1", "dave", "typo")
	}
	if r := p.loginFrom("10.0.4.1", "dave", "dave-pw"); r.Status != 201 {
		t.Fatalf("dave after four typos: %d %s", r.Status, r.Raw)
	}
	p.loginFrom("10.0.4.1", "dave", "typo")
	if r := p.loginFrom("10.0.4.1", "dave", "dave-pw"); r.Status != 201 {
		t.Fatalf("dave's own typos were not forgiven by his success: %d %s", r.Status, r.Raw)
	}

	// Bans survive a config reload.
	p.reload(throttleGlobals, site)
	if r := p.loginFrom("10.0.0.1", "alice", "alice-pw"); r.Status != 429 {
		t.Fatalf("ban lost on reload: %d %s", r.Status, r.Raw)
	}

	// Every failure is logged so fail2ban can match it, and the filter
	// finds the client IP even when a user name imitates the field.
	p.loginFrom("10.0.5.1", `x","client_ip":"6.6.6.6`, "x")
	hosts := fail2banHosts(t, p.Logs())
	if hosts["10.0.0.1"] != 5 || hosts["10.0.5.1"] != 1 || hosts["10.0.3.1"] != 5 {
		t.Fatalf("fail2ban filter matched %v", hosts)
	}
	if hosts["6.6.6.6"] != 0 {
		t.Fatal("a user name injected a client_ip the filter believed")
	}
}

func TestThrottleUntrustedForwardedFor(t *testing.T) {
	p := startCaddy(t, "", throttleSite(t))
	for i := 0; i < 5; i++ {
		p.loginFrom(fmt.Sprintf("10.9.0.%d", i), fmt.Sprintf("nobody%d", i), "x")
	}
	if r := p.loginFrom("10.9.9.9", "alice", "alice-pw"); r.Status != 429 {
		t.Fatalf("an untrusted X-Forwarded-For escaped the IP ban: %d %s", r.Status, r.Raw)
	}
}

// fail2banHosts applies the documented fail2ban filter (fail2banRegexp) to
// log lines and counts the hosts it finds.
func fail2banHosts(t *testing.T, logs string) map[string]int {
	t.Helper()
	re := fail2banRegexp(t)
	hosts := make(map[string]int)
	for _, line := range strings.Split(logs, "\n") {
		if sm := re.FindStringSubmatch(line); sm != nil {
			hosts[sm[1]]++
		}
	}
	return hosts
}
