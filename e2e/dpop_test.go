package e2e

// DPoP end to end through a real Caddy (harness_test.go): every case of
// issue 16's "Done when" list, and the replay cache shared through Redis.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// dpopSite guards /api/* and echoes the binding the guard hands on.
func dpopSite(t *testing.T, extra string) string {
	return fmt.Sprintf(`
	token_auth /api/* {
		signing_key hs256 %s
		store memory
		user alice %s
		%s
	}
	respond /api/* "hello {http.auth.user.id} jkt={http.auth.user.cnf_jkt}" 200
`, e2eSecret, testenv.Hash(t, "alice-pw"), extra)
}

var dpopLoginBody = map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"}

// e2eDPoP is a client with a key, talking to one Caddy (or, with a public
// URL through a trusted proxy, to several).
type e2eDPoP struct {
	*testenv.DPoPClient
	t    *testing.T
	base string // the URL the proofs name (the client's view)
}

func (c *e2eDPoP) login(p *caddyProc, header ...string) apiResponse {
	c.t.Helper()
	return p.do("POST", "/authentication", dpopLoginBody, append([]string{"DPoP", c.Proof(c.t, "POST", c.base+"/authentication", "")}, header...)...)
}

func (c *e2eDPoP) refresh(p *caddyProc, rt string, proof string, header ...string) apiResponse {
	c.t.Helper()
	h := header
	if proof != "" {
		h = append([]string{"DPoP", proof}, header...)
	}
	return p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": rt}, h...)
}

func (c *e2eDPoP) get(p *caddyProc, path, at, proof string, header ...string) apiResponse {
	c.t.Helper()
	return p.do("GET", path, nil, append([]string{"Authorization", "DPoP " + at, "DPoP", proof}, header...)...)
}

func wantBound(t *testing.T, what string, res apiResponse, jkt string) {
	t.Helper()
	if res.Status != http.StatusCreated || res.str("token_type") != "DPoP" || res.str("authentication.payload.cnf.jkt") != jkt {
		t.Fatalf("%s: %d %s, want 201 bound to %s", what, res.Status, res.Raw, jkt)
	}
}

func wantDPoPRefusal(t *testing.T, what string, res apiResponse, dpopError string) {
	t.Helper()
	want := fmt.Sprintf(`DPoP error=%q, algs="ES256 EdDSA RS256"`, dpopError)
	if res.Status != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("%s: %d %q %s, want 401 %s", what, res.Status, res.Header.Get("WWW-Authenticate"), res.Raw, want)
	}
}

func wantReason(t *testing.T, what string, res apiResponse, status int, reason string) {
	t.Helper()
	if res.Status != status || res.str("data.reason") != reason {
		t.Fatalf("%s: %d %s, want %d with reason %s", what, res.Status, res.Raw, status, reason)
	}
}

// TestDPoPEndToEnd: login with a proof gets bound tokens; the guard, the
// refresh and every refusal of the list, through a real Caddy.
func TestDPoPEndToEnd(t *testing.T) {
	p := startCaddy(t, "", dpopSite(t, ""))
	c := &e2eDPoP{DPoPClient: testenv.NewDPoPClient(t, "ES256"), t: t, base: p.BaseURL}
	thief := &e2eDPoP{DPoPClient: testenv.NewDPoPClient(t, "ES256"), t: t, base: p.BaseURL}
	jkt := c.Thumbprint(t)
	api := p.BaseURL + "/api/thing"
	ep := p.BaseURL + "/authentication"

	login := c.login(p)
	wantBound(t, "login with a proof", login, jkt)
	at, rt := login.str("accessToken"), login.str("refreshToken")

	res := c.get(p, "/api/thing", at, c.Proof(t, "GET", api, at))
	if res.Status != http.StatusOK || res.Raw != "hello alice jkt="+jkt {
		t.Fatalf("resource with a proof: %d %q", res.Status, res.Raw)
	}

	t.Run("refused at the resource", func(t *testing.T) {
		used := c.Proof(t, "GET", api, at)
		if res := c.get(p, "/api/thing", at, used); res.Status != http.StatusOK {
			t.Fatalf("first use: %d", res.Status)
		}
		cases := map[string]struct {
			proof  string
			header []string
			want   string
		}{
			"replayed proof":      {proof: used, want: "invalid_dpop_proof"},
			"another method":      {proof: c.Proof(t, "POST", api, at), want: "invalid_dpop_proof"},
			"another URL":         {proof: c.Proof(t, "GET", p.BaseURL+"/api/other", at), want: "invalid_dpop_proof"},
			"stale iat":           {proof: c.Proof(t, "GET", api, at, testenv.SetClaim("iat", time.Now().Add(-2*time.Minute).Unix())), want: "invalid_dpop_proof"},
			"ath of another":      {proof: c.Proof(t, "GET", api, "another.token.value"), want: "invalid_dpop_proof"},
			"alg none":            {proof: c.Proof(t, "GET", api, at, testenv.SignWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)), want: "invalid_dpop_proof"},
			"alg HS256":           {proof: c.Proof(t, "GET", api, at, testenv.SignWith(jwt.SigningMethodHS256, []byte(e2eSecret))), want: "invalid_dpop_proof"},
			"jwk with d":          {proof: c.Proof(t, "GET", api, at, func(s *testenv.ProofSpec) { s.Header["jwk"] = testenv.JWKMembers(t, c.Signer) }), want: "invalid_dpop_proof"},
			"another key":         {proof: thief.Proof(t, "GET", api, at), want: "invalid_dpop_proof"},
			"forwarded untrusted": {proof: c.Proof(t, "GET", "https://app.example/api/thing", at), header: []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"}, want: "invalid_dpop_proof"},
		}
		for name, tc := range cases {
			wantDPoPRefusal(t, name, c.get(p, "/api/thing", at, tc.proof, tc.header...), tc.want)
		}
		wantDPoPRefusal(t, "bound token as Bearer", p.do("GET", "/api/thing", nil, "Authorization", "Bearer "+at, "DPoP", c.Proof(t, "GET", api, at)), "invalid_token")
		wantDPoPRefusal(t, "bound token in the cookie", p.do("GET", "/api/thing", nil, "Cookie", "access_token="+at), "invalid_token")
		wantDPoPRefusal(t, "no proof", p.do("GET", "/api/thing", nil, "Authorization", "DPoP "+at), "invalid_dpop_proof")
	})

	t.Run("refresh", func(t *testing.T) {
		wantReason(t, "refresh without a proof", c.refresh(p, rt, ""), http.StatusUnauthorized, "invalid_dpop_proof")
		wantReason(t, "refresh with another key", c.refresh(p, rt, thief.Proof(t, "POST", ep, "")), http.StatusUnauthorized, "invalid_dpop_proof")
		wantReason(t, "refresh with a stale proof", c.refresh(p, rt, c.Proof(t, "POST", ep, "", testenv.SetClaim("iat", time.Now().Add(-2*time.Minute).Unix()))), http.StatusUnauthorized, "invalid_dpop_proof")
		next := c.refresh(p, rt, c.Proof(t, "POST", ep, ""))
		wantBound(t, "refresh with the key, after the refusals", next, jkt)
		nat := next.str("accessToken")
		if res := c.get(p, "/api/thing", nat, c.Proof(t, "GET", api, nat)); res.Status != http.StatusOK {
			t.Fatalf("refreshed token: %d", res.Status)
		}
	})
}

// TestDPoPRequiredEndToEnd: with `dpop required` a login without a proof
// is 400 invalid_dpop_proof, and one with a proof works.
func TestDPoPRequiredEndToEnd(t *testing.T) {
	p := startCaddy(t, "", dpopSite(t, "dpop required"))
	wantReason(t, "login without a proof", p.do("POST", "/authentication", dpopLoginBody), http.StatusBadRequest, "invalid_dpop_proof")
	c := &e2eDPoP{DPoPClient: testenv.NewDPoPClient(t, "EdDSA"), t: t, base: p.BaseURL}
	login := c.login(p)
	wantBound(t, "login with a proof", login, c.Thumbprint(t))
	if res := p.do("GET", "/api/thing", nil); res.Status != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "DPoP ") {
		t.Fatalf("no token: %d %q", res.Status, res.Header.Get("WWW-Authenticate"))
	}
}

// TestDPoPReplayAcrossInstances: two Caddy instances sharing a Redis
// store, behind a (trusted) proxy that gives both the same public URL: a
// proof used at one is refused at the other; a fresh one is accepted.
func TestDPoPReplayAcrossInstances(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	site := fmt.Sprintf(`
	token_auth /api/* {
		realm dpop-cluster-%d
		signing_key hs256 %s
		store redis {env.TEST_TOKEN_AUTH_REDIS_URL}
		user alice %s
	}
	respond /api/* "hello {http.auth.user.id}" 200
`, time.Now().UnixNano(), e2eSecret, testenv.Hash(t, "alice-pw"))
	globals := "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
	env := caddyOptions{Env: []string{"TEST_TOKEN_AUTH_REDIS_URL=" + redisURL}}
	a, b := startCaddy(t, globals, site, env), startCaddy(t, globals, site, env)
	proxy := []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"}
	c := &e2eDPoP{DPoPClient: testenv.NewDPoPClient(t, "ES256"), t: t, base: "https://app.example"}

	login := c.login(a, proxy...)
	wantBound(t, "login at A", login, c.Thumbprint(t))
	at := login.str("accessToken")
	proof := c.Proof(t, "GET", "https://app.example/api/thing", at)
	if res := c.get(a, "/api/thing", at, proof, proxy...); res.Status != http.StatusOK {
		t.Fatalf("proof at A: %d %s\n%s", res.Status, res.Raw, a.Logs())
	}
	wantDPoPRefusal(t, "the same proof at B", c.get(b, "/api/thing", at, proof, proxy...), "invalid_dpop_proof")
	if !strings.Contains(b.Logs(), "used before") {
		t.Fatalf("B did not refuse the proof as a replay:\n%s", b.Logs())
	}
	if res := c.get(b, "/api/thing", at, c.Proof(t, "GET", "https://app.example/api/thing", at), proxy...); res.Status != http.StatusOK {
		t.Fatalf("a fresh proof at B: %d %s", res.Status, res.Raw)
	}
}
