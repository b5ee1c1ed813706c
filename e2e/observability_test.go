package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// observedSite has a guarded /api/*, a second handler of another realm
// (so two handlers register their metrics into one registry), and Caddy's
// own metrics handler at /metrics.
func observedSite(hash string) string {
	return fmt.Sprintf(`
	token_auth /api/* {
		signing_key hs256 %[1]s
		store memory
		user alice %[2]s {
			email alice@example.com
			roles staff
		}
	}
	token_auth /ops/* {
		realm ops
		endpoint /ops-auth
		signing_key hs256 %[1]s
		store memory
		user alice %[2]s
		require role admin
	}
	handle /metrics {
		metrics
	}
	handle {
		respond "ok"
	}
`, e2eSecret, hash)
}

// scrape reads Prometheus text from url into "name{labels}" -> value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_token_auth_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func wantMetrics(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("metric %s missing; have %v", k, got)
			continue
		}
		if g != v {
			t.Errorf("metric %s = %v, want %v", k, g, v)
		}
	}
}

// observedSession runs one of everything the plugin counts and logs.
type observedSession struct {
	access, refresh, refreshed string
}

func runObservedSession(t *testing.T, p *caddyProc) observedSession {
	t.Helper()
	var s observedSession
	if r := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "not-her-password"}); r.Status != 401 {
		t.Fatalf("wrong password: %d %s", r.Status, r.Raw)
	}
	login := p.do("POST", "/authentication", map[string]string{"strategy": "local", "email": "alice@example.com", "password": "wonderland"})
	if login.Status != 201 {
		t.Fatalf("login: %d %s", login.Status, login.Raw)
	}
	s.access, s.refresh = login.str("accessToken"), login.str("refreshToken")
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/api/x", "", 401},
		{"/api/x", "not-a-token", 401},
		{"/api/x", s.access, 200},
		{"/api/y", s.access, 200},
	} {
		var hdr []string
		if c.token != "" {
			hdr = []string{"Authorization", "Bearer " + c.token}
		}
		if r := p.do("GET", c.path, nil, hdr...); r.Status != c.want {
			t.Fatalf("GET %s: %d, want %d", c.path, r.Status, c.want)
		}
	}
	ref := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": s.refresh})
	if ref.Status != 201 {
		t.Fatalf("refresh: %d %s", ref.Status, ref.Raw)
	}
	s.refreshed = ref.str("refreshToken")
	// a second rotation, then the first token again: reuse (outside the
	// grace, which only covers the previous generation)
	if r := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": s.refreshed}); r.Status != 201 {
		t.Fatalf("second refresh: %d %s", r.Status, r.Raw)
	}
	reuse := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": s.refresh})
	if reuse.Status != 401 || !strings.Contains(reuse.Raw, "refresh_token_reused") {
		t.Fatalf("reuse: %d %s", reuse.Status, reuse.Raw)
	}
	if r := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": "garbage"}); r.Status != 401 {
		t.Fatalf("garbage refresh: %d", r.Status)
	}
	// the session is revoked by the reuse: a new login to log out
	again := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "wonderland"})
	if r := p.do("DELETE", "/authentication", nil, "Authorization", "Bearer "+again.str("accessToken")); r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	// the ops realm: alice lacks the admin role
	opsLogin := p.do("POST", "/ops-auth", map[string]string{"strategy": "local", "username": "alice", "password": "wonderland"})
	if r := p.do("GET", "/ops/x", nil, "Authorization", "Bearer "+opsLogin.str("accessToken")); r.Status != 403 {
		t.Fatalf("ops without role: %d", r.Status)
	}
	return s
}

// TestMetricsScrapedThroughCaddy checks the counters in Caddy's own
// registry, scraped from Caddy's metrics handler, after a session; and that
// they survive a config reload (new registry, same counters).
func TestMetricsScrapedThroughCaddy(t *testing.T) {
	hash := testenv.Hash(t, "wonderland")
	p := startCaddy(t, "", observedSite(hash))
	runObservedSession(t, p)

	want := map[string]float64{
		`caddy_token_auth_logins_total{method="password",realm="default",result="success"}`: 2,
		`caddy_token_auth_logins_total{method="password",realm="default",result="failure"}`: 1,
		`caddy_token_auth_logins_total{method="password",realm="default",result="error"}`:   0,
		`caddy_token_auth_logins_total{method="password",realm="ops",result="success"}`:     1,
		`caddy_token_auth_refreshes_total{realm="default",result="rotated"}`:                2,
		`caddy_token_auth_refreshes_total{realm="default",result="reused"}`:                 1,
		`caddy_token_auth_refreshes_total{realm="default",result="invalid"}`:                1,
		`caddy_token_auth_refreshes_total{realm="default",result="graced"}`:                 0,
		`caddy_token_auth_reuse_detections_total{realm="default"}`:                          1,
		`caddy_token_auth_guard_decisions_total{realm="default",result="accepted"}`:         2,
		`caddy_token_auth_guard_decisions_total{realm="default",result="no_token"}`:         1,
		`caddy_token_auth_guard_decisions_total{realm="default",result="invalid_token"}`:    1,
		`caddy_token_auth_guard_decisions_total{realm="ops",result="forbidden"}`:            1,
		`caddy_token_auth_guard_decisions_total{realm="ops",result="accepted"}`:             0,
	}
	wantMetrics(t, scrape(t, p.BaseURL+"/metrics"), want)
	// the admin endpoint serves the same registry
	wantMetrics(t, scrape(t, p.adminURL+"/metrics"), want)

	p.reload("", observedSite(hash)+"\n\theader X-Reloaded 1\n")
	if r := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "wonderland"}); r.Status != 201 {
		t.Fatalf("login after reload: %d %s", r.Status, r.Raw)
	}
	wantMetrics(t, scrape(t, p.BaseURL+"/metrics"), map[string]float64{
		`caddy_token_auth_logins_total{method="password",realm="default",result="success"}`: 3,
		`caddy_token_auth_reuse_detections_total{realm="default"}`:                          1,
	})
}

// logLine is one JSON log entry of Caddy's.
type logLine map[string]any

func pluginLogs(t *testing.T, p *caddyProc) ([]logLine, []string) {
	t.Helper()
	var entries []logLine
	var raw []string
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e logLine
		if json.Unmarshal([]byte(line), &e) != nil || e["logger"] != "http.handlers.token_auth" {
			continue
		}
		entries = append(entries, e)
		raw = append(raw, line)
	}
	return entries, raw
}

func findLog(entries []logLine, level, msg string) []logLine {
	var out []logLine
	for _, e := range entries {
		if e["level"] == level && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// TestLogsOfASession reads Caddy's log of a session: logins with user and
// client IP, refreshes, reuse as a warning, logout; and no secret anywhere.
func TestLogsOfASession(t *testing.T) {
	hash := testenv.Hash(t, "wonderland")
	p := startCaddy(t, "", observedSite(hash))
	s := runObservedSession(t, p)
	entries, raw := pluginLogs(t, p)

	check := func(level, msg string, n int, fields map[string]string) {
		t.Helper()
		got := findLog(entries, level, msg)
		if len(got) != n {
			t.Errorf("%d %s lines %q, want %d; plugin logs:\n%s", len(got), level, msg, n, strings.Join(raw, "\n"))
			return
		}
		for _, e := range got {
			for k, v := range fields {
				if v == "*" && e[k] != nil && e[k] != "" {
					continue
				}
				if e[k] != v {
					t.Errorf("%s line: %s = %v, want %q", msg, k, e[k], v)
				}
			}
		}
	}
	check("info", "login failed", 1, map[string]string{"user": "alice", "client_ip": "127.0.0.1", "realm": "default"})
	check("info", "login succeeded", 3, map[string]string{"user": "alice", "client_ip": "127.0.0.1", "sid": "*"})
	check("info", "session refreshed", 2, map[string]string{"user": "alice", "client_ip": "127.0.0.1", "outcome": "rotated", "sid": "*"})
	check("warn", "refresh token reused; session revoked", 1, map[string]string{"user": "alice", "client_ip": "127.0.0.1", "sid": "*"})
	check("info", "refresh refused", 1, map[string]string{"reason": "invalid_token", "client_ip": "127.0.0.1"})
	check("info", "logout", 1, map[string]string{"user": "alice", "client_ip": "127.0.0.1", "sid": "*"})

	// Caddy itself dumps the whole adapted config at debug level (logger
	// http.auto_https, "adjusted config"), inline users and keys included;
	// the README says to keep them in users_file and {env.*}. Every other
	// line, Caddy's and the plugin's, must be free of secrets.
	var kept []string
	for _, line := range strings.Split(p.Logs(), "\n") {
		if !strings.Contains(line, `"msg":"adjusted config"`) {
			kept = append(kept, line)
		}
	}
	all := strings.Join(kept, "\n")
	for name, secret := range map[string]string{
		"password": "wonderland", "wrong password": "not-her-password", "hash": hash, "signing secret": e2eSecret,
		"access token": s.access, "refresh token": s.refresh, "rotated refresh token": s.refreshed,
	} {
		if strings.Contains(all, secret) {
			t.Errorf("the logs contain the %s", name)
		}
	}
}

// fail2banRegexp turns the failregex of docs/fail2ban/caddy-token-auth.conf
// into a Go regexp, <ADDR> becoming a capture of the address.
func fail2banRegexp(t *testing.T) *regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile("../docs/fail2ban/caddy-token-auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rx, ok := strings.CutPrefix(line, "failregex = "); ok {
			return regexp.MustCompile(strings.ReplaceAll(rx, "<ADDR>", `([0-9A-Fa-f.:]+)`))
		}
	}
	t.Fatal("no failregex in the filter")
	return nil
}

// TestFail2banFilterMatchesFailedLogins applies the documented fail2ban
// filter to a real Caddy's log: each failed login matches once with the
// client's address; successes, refreshes and a crafted user name that
// imitates the pattern do not smuggle in another address.
func TestFail2banFilterMatchesFailedLogins(t *testing.T) {
	rx := fail2banRegexp(t)
	p := startCaddy(t, "", observedSite(testenv.Hash(t, "wonderland")))
	runObservedSession(t, p)
	crafted := `x","msg":"login failed","client_ip":"203.0.113.9`
	p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": crafted, "password": "x"})

	var addrs []string
	for _, line := range strings.Split(p.Logs(), "\n") {
		if m := rx.FindStringSubmatch(line); m != nil {
			addrs = append(addrs, m[1])
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("filter matched %d lines (%v), want the 2 failed logins; logs:\n%s", len(addrs), addrs, p.Logs())
	}
	for _, a := range addrs {
		if a != "127.0.0.1" {
			t.Errorf("filter matched address %q, want 127.0.0.1", a)
		}
	}
}
