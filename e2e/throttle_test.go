package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

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
	respond "ok"`, strings.Repeat("s", 32), testenv.Hash(t, "alice-pw"), testenv.Hash(t, "bob-pw"), testenv.Hash(t, "carol-pw"), testenv.Hash(t, "dave-pw"))
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
