package tokenauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// The DPoP flow in process, through ServeHTTP with a real (memory) store:
// binding at login and refresh, the guard's rules for bound tokens, and
// the modes. e2e/dpop_test.go runs the same through a real Caddy.

const dpopTestEndpoint = "http://example.com/authentication"

func dpopHandler(t *testing.T, mode string) *TokenAuth {
	t.Helper()
	ta := &TokenAuth{
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: testSecret},
		Store:      &StoreConfig{Backend: "memory"},
		Realm:      "dpop-test-" + mode,
		Users:      []User{{ID: "alice", Password: testenv.Hash(t, "a")}},
	}
	if mode != "" {
		ta.DPoP = &DPoPConfig{Mode: mode}
	}
	provisionInProcess(t, ta)
	return ta
}

// dpopAnswer is an endpoint answer, decoded.
type dpopAnswer struct {
	code   int
	header http.Header
	body   struct {
		AccessToken, RefreshToken string
		TokenType                 string `json:"token_type"`
		Authentication            struct{ Payload map[string]any }
		Data                      struct{ Reason string }
	}
}

func dpopServe(t *testing.T, ta *TokenAuth, method, path, body string, header ...string) dpopAnswer {
	t.Helper()
	w := serve(t, ta, method, path, body, header...)
	a := dpopAnswer{code: w.Code, header: w.Header()}
	_ = json.Unmarshal(w.Body.Bytes(), &a.body)
	return a
}

func dpopLogin(t *testing.T, ta *TokenAuth, header ...string) dpopAnswer {
	t.Helper()
	return dpopServe(t, ta, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"a"}`, header...)
}

func dpopRefresh(t *testing.T, ta *TokenAuth, rt string, header ...string) dpopAnswer {
	t.Helper()
	return dpopServe(t, ta, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+rt+`"}`, header...)
}

func loginProof(t *testing.T, c *dpopClient) []string {
	return []string{"DPoP", c.Proof(t, "POST", dpopTestEndpoint, "")}
}

// resource requests GET /private with a bound token and a proof for it.
func resource(t *testing.T, c *dpopClient, ta *TokenAuth, at string) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, ta, "GET", "/private", "", "Authorization", "DPoP "+at, "DPoP", c.Proof(t, "GET", "http://example.com/private", at))
}

// TestDPoPBoundSession: a login with a proof gets tokens bound to the key
// (cnf.jkt, token_type DPoP, the session's JKT); refreshes need a proof
// by that key, and a refused one changes nothing: the right key refreshes
// afterwards. Reuse detection still applies to the same key.
func TestDPoPBoundSession(t *testing.T) {
	ta := dpopHandler(t, "")
	c, thief := newDPoPClient(t, "ES256"), newDPoPClient(t, "EdDSA")
	login := dpopLogin(t, ta, loginProof(t, c)...)
	if login.code != http.StatusCreated || login.body.TokenType != "DPoP" {
		t.Fatalf("login: %d %+v", login.code, login.body)
	}
	cnf, _ := login.body.Authentication.Payload["cnf"].(map[string]any)
	if cnf["jkt"] != c.Thumbprint(t) {
		t.Fatalf("cnf %v, want jkt %s", cnf, c.Thumbprint(t))
	}
	claims, err := ta.tokens.verifyAccess(login.body.AccessToken)
	if err != nil || claims.boundKey() != c.Thumbprint(t) {
		t.Fatalf("access token claims %+v, %v", claims, err)
	}
	s, err := ta.realm.store.Get(context.Background(), claims.SID)
	if err != nil || s.JKT != c.Thumbprint(t) {
		t.Fatalf("session %+v, %v", s, err)
	}

	rt := login.body.RefreshToken
	for name, header := range map[string][]string{
		"no proof":        nil,
		"another key":     {"DPoP", thief.Proof(t, "POST", dpopTestEndpoint, "")},
		"a bad proof":     {"DPoP", c.Proof(t, "GET", dpopTestEndpoint, "")},
		"a replayed one":  loginProofReplayed(t, c, ta),
		"proof of a path": {"DPoP", c.Proof(t, "POST", "http://example.com/other", "")},
	} {
		if a := dpopRefresh(t, ta, rt, header...); a.code != http.StatusUnauthorized || a.body.Data.Reason != "invalid_dpop_proof" {
			t.Fatalf("refresh with %s: %d %+v", name, a.code, a.body)
		}
	}
	next := dpopRefresh(t, ta, rt, loginProof(t, c)...)
	if next.code != http.StatusCreated || next.body.TokenType != "DPoP" {
		t.Fatalf("refresh with the key after refusals: %d %+v", next.code, next.body)
	}
	if c2, _ := ta.tokens.verifyAccess(next.body.AccessToken); c2 == nil || c2.boundKey() != c.Thumbprint(t) {
		t.Fatal("refreshed access token is not bound")
	}
	// the first refresh token again, past the grace: reuse, even with the key
	*ta.ReuseGrace = 0
	if a := dpopRefresh(t, ta, rt, loginProof(t, c)...); a.code != http.StatusUnauthorized || a.body.Data.Reason != "refresh_token_reused" {
		t.Fatalf("reuse by the same key: %d %+v", a.code, a.body)
	}
}

// loginProofReplayed returns a proof already used once (at a login).
func loginProofReplayed(t *testing.T, c *dpopClient, ta *TokenAuth) []string {
	header := loginProof(t, c)
	if a := dpopLogin(t, ta, header...); a.code != http.StatusCreated {
		t.Fatalf("login: %d", a.code)
	}
	return header
}

// TestDPoPGuard: a bound token is accepted only as `Authorization: DPoP`
// with a fresh proof by its key for this request and this token; every
// other way is a 401 with an RFC 9449 §7.1 challenge.
func TestDPoPGuard(t *testing.T) {
	ta := dpopHandler(t, "")
	c, other := newDPoPClient(t, "ES256"), newDPoPClient(t, "ES256")
	at := dpopLogin(t, ta, loginProof(t, c)...).body.AccessToken
	plain := dpopLogin(t, ta).body.AccessToken

	if w := resource(t, c, ta, at); w.Code != http.StatusTeapot {
		t.Fatalf("bound token with its proof: %d %s", w.Code, w.Body)
	}
	const url = "http://example.com/private"
	proof := c.Proof(t, "GET", url, at)
	for name, tc := range map[string]struct {
		header []string
		want   string
	}{
		"as Bearer":           {[]string{"Authorization", "Bearer " + at, "DPoP", c.Proof(t, "GET", url, at)}, "invalid_token"},
		"as a bare token":     {[]string{"Authorization", at}, "invalid_token"},
		"in the cookie":       {[]string{"Cookie", "access_token=" + at}, "invalid_token"},
		"without a proof":     {[]string{"Authorization", "DPoP " + at}, "invalid_dpop_proof"},
		"proof by other key":  {[]string{"Authorization", "DPoP " + at, "DPoP", other.Proof(t, "GET", url, at)}, "invalid_dpop_proof"},
		"ath of another":      {[]string{"Authorization", "DPoP " + at, "DPoP", c.Proof(t, "GET", url, plain)}, "invalid_dpop_proof"},
		"proof for POST":      {[]string{"Authorization", "DPoP " + at, "DPoP", c.Proof(t, "POST", url, at)}, "invalid_dpop_proof"},
		"unbound token, DPoP": {[]string{"Authorization", "DPoP " + plain, "DPoP", c.Proof(t, "GET", url, plain)}, "invalid_token"},
		"bad token, DPoP":     {[]string{"Authorization", "DPoP x.y.z", "DPoP", c.Proof(t, "GET", url, "x.y.z")}, "invalid_token"},
		"replayed proof": {[]string{"Authorization", "DPoP " + at, "DPoP", func() string {
			if w := serve(t, ta, "GET", "/private", "", "Authorization", "DPoP "+at, "DPoP", proof); w.Code != http.StatusTeapot {
				t.Fatalf("first use: %d", w.Code)
			}
			return proof
		}()}, "invalid_dpop_proof"},
	} {
		w := serve(t, ta, "GET", "/private", "", tc.header...)
		want := `DPoP error="` + tc.want + `", algs="ES256 EdDSA RS256"`
		if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != want {
			t.Errorf("%s: %d %q, want 401 %q", name, w.Code, w.Header().Get("WWW-Authenticate"), want)
		}
	}
	// optional mode: bearer tokens go on as before
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+plain); w.Code != http.StatusTeapot {
		t.Fatalf("bearer token in optional mode: %d", w.Code)
	}
}

// TestDPoPPlaceholder: {http.auth.user.cnf_jkt} is the bound key's
// thumbprint, and empty for a bearer token.
func TestDPoPPlaceholder(t *testing.T) {
	ta := dpopHandler(t, "")
	c := newDPoPClient(t, "EdDSA")
	at := dpopLogin(t, ta, loginProof(t, c)...).body.AccessToken
	for token, want := range map[string]string{at: c.Thumbprint(t), dpopLogin(t, ta).body.AccessToken: ""} {
		r := httptest.NewRequest("GET", "/private", nil)
		if want != "" {
			r.Header.Set("Authorization", "DPoP "+token)
			r.Header.Set("DPoP", c.Proof(t, "GET", "http://example.com/private", token))
		} else {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		var got any
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			got, _ = repl.Get("http.auth.user.cnf_jkt")
			return nil
		})
		if err := ta.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("cnf_jkt %q, want %q", got, want)
		}
	}
}

// TestDPoPBindAtRefresh: an unbound session refreshed with a proof
// becomes bound; from then on it needs the key.
func TestDPoPBindAtRefresh(t *testing.T) {
	ta := dpopHandler(t, "")
	c := newDPoPClient(t, "RS256")
	login := dpopLogin(t, ta)
	if login.body.TokenType != "" {
		t.Fatalf("login without a proof: token_type %q", login.body.TokenType)
	}
	bound := dpopRefresh(t, ta, login.body.RefreshToken, loginProof(t, c)...)
	if bound.code != http.StatusCreated || bound.body.TokenType != "DPoP" {
		t.Fatalf("refresh with a proof: %d %+v", bound.code, bound.body)
	}
	if a := dpopRefresh(t, ta, bound.body.RefreshToken); a.code != http.StatusUnauthorized || a.body.Data.Reason != "invalid_dpop_proof" {
		t.Fatalf("bound session refreshed without a proof: %d %+v", a.code, a.body)
	}
	if a := dpopRefresh(t, ta, bound.body.RefreshToken, loginProof(t, c)...); a.code != http.StatusCreated {
		t.Fatalf("bound session with its key: %d", a.code)
	}
}

// TestDPoPRequired: with dpop required, logins and refreshes without a
// proof are 400 invalid_dpop_proof, and the guard refuses bearer tokens.
func TestDPoPRequired(t *testing.T) {
	ta := dpopHandler(t, dpopRequired)
	if a := dpopLogin(t, ta); a.code != http.StatusBadRequest || a.body.Data.Reason != "invalid_dpop_proof" {
		t.Fatalf("login without a proof: %d %+v", a.code, a.body)
	}
	c := newDPoPClient(t, "ES256")
	login := dpopLogin(t, ta, loginProof(t, c)...)
	if login.code != http.StatusCreated {
		t.Fatalf("login with a proof: %d", login.code)
	}
	if a := dpopRefresh(t, ta, login.body.RefreshToken); a.code != http.StatusBadRequest || a.body.Data.Reason != "invalid_dpop_proof" {
		t.Fatalf("refresh without a proof: %d %+v", a.code, a.body)
	}
	if w := resource(t, c, ta, login.body.AccessToken); w.Code != http.StatusTeapot {
		t.Fatalf("bound token: %d", w.Code)
	}
	// an unbound token (as issued before the mode changed)
	user := ta.users.byID("alice")
	unbound, _, err := ta.tokens.issueAccess(user, "some-session", ta.now().Add(ta.tokens.accessTTL))
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"Bearer " + unbound, ""} {
		w := serve(t, ta, "GET", "/private", "", "Authorization", auth)
		if w.Code != http.StatusUnauthorized || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "DPoP ") {
			t.Fatalf("%q: %d %q", auth, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
}

// TestDPoPOff: with dpop off proofs are ignored (bearer tokens), and a
// token bound earlier is refused rather than taken as a bearer token.
func TestDPoPOff(t *testing.T) {
	optional := dpopHandler(t, "")
	c := newDPoPClient(t, "ES256")
	bound := dpopLogin(t, optional, loginProof(t, c)...).body.AccessToken

	ta := dpopHandler(t, dpopOff)
	login := dpopLogin(t, ta, loginProof(t, c)...)
	if login.code != http.StatusCreated || login.body.TokenType != "" {
		t.Fatalf("login with a proof, dpop off: %d %+v", login.code, login.body)
	}
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+login.body.AccessToken); w.Code != http.StatusTeapot {
		t.Fatalf("bearer token: %d", w.Code)
	}
	ta.tokens = optional.tokens // same keys: the bound token verifies
	if w := resource(t, c, ta, bound); w.Code != http.StatusUnauthorized {
		t.Fatalf("bound token with dpop off: %d", w.Code)
	}
}

// TestDPoPLogoutAndReauthenticate: the endpoint's own uses of an access
// token follow the guard's rules: a bound token logs out with its proof
// (not as Bearer), and reAuthenticate needs the proof in the DPoP header.
func TestDPoPLogoutAndReauthenticate(t *testing.T) {
	ta := dpopHandler(t, "")
	c := newDPoPClient(t, "ES256")
	at := dpopLogin(t, ta, loginProof(t, c)...).body.AccessToken
	body := `{"strategy":"jwt","accessToken":"` + at + `"}`
	if a := dpopServe(t, ta, "POST", "/authentication", body); a.code != http.StatusUnauthorized || a.body.Data.Reason != "invalid_dpop_proof" {
		t.Fatalf("reAuthenticate without a proof: %d %+v", a.code, a.body)
	}
	if a := dpopServe(t, ta, "POST", "/authentication", body, "DPoP", c.Proof(t, "POST", dpopTestEndpoint, at)); a.code != http.StatusCreated {
		t.Fatalf("reAuthenticate with a proof: %d %+v", a.code, a.body)
	}
	if a := dpopServe(t, ta, "DELETE", "/authentication", "", "Authorization", "Bearer "+at); a.code != http.StatusUnauthorized {
		t.Fatalf("logout with the bound token as Bearer: %d", a.code)
	}
	if a := dpopServe(t, ta, "DELETE", "/authentication", "", "Authorization", "DPoP "+at, "DPoP", c.Proof(t, "DELETE", dpopTestEndpoint, at)); a.code != http.StatusOK {
		t.Fatalf("logout with the bound token and its proof: %d", a.code)
	}
	if w := resource(t, c, ta, at); w.Code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", w.Code)
	}
}

// TestDPoPBoundTokenAtTheAccountAPIs: the endpoint's other uses of an
// access token (own sessions, passkey and TOTP set-up) refuse a bound
// token sent as Bearer, as the guard and logout do.
func TestDPoPBoundTokenAtTheAccountAPIs(t *testing.T) {
	ta := dpopHandler(t, "")
	c := newDPoPClient(t, "ES256")
	at := dpopLogin(t, ta, loginProof(t, c)...).body.AccessToken
	if a := dpopServe(t, ta, "GET", "/authentication/sessions", "", "Authorization", "Bearer "+at); a.code != http.StatusUnauthorized || a.body.Data.Reason != "invalid_token" {
		t.Fatalf("own sessions with the bound token as Bearer: %d %+v", a.code, a.body)
	}
	if a := dpopServe(t, ta, "GET", "/authentication/sessions", "", "Authorization", "DPoP "+at, "DPoP", c.Proof(t, "GET", dpopTestEndpoint+"/sessions", at)); a.code != http.StatusOK {
		t.Fatalf("own sessions with the bound token and its proof: %d %+v", a.code, a.body)
	}
}

// TestDPoPCaddyfileErrors: bad dpop options are refused with a clear error.
func TestDPoPCaddyfileErrors(t *testing.T) {
	for input, want := range map[string]string{
		"dpop":                                  "wrong argument count",
		"dpop sometimes":                        "mode must be off, optional or required",
		"dpop on off":                           "wrong argument count",
		"dpop optional {\n iat_window -1s\n}":   "must be positive",
		"dpop optional {\n iat_window soon\n}":  "invalid duration",
		"dpop optional {\n nonces\n}":           `unknown dpop option "nonces"`,
		"dpop optional {\n nonce yes\n}":        "wrong argument count",
		"dpop required {\n iat_window 1m 2m\n}": "wrong argument count",
	} {
		var ta TokenAuth
		err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + input + "\n}"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
	// the JSON config is checked at Provision the same way
	ta := &TokenAuth{SigningKey: &KeyConfig{Algorithm: "hs256", Key: testSecret}, Store: &StoreConfig{Backend: "memory"}, DPoP: &DPoPConfig{Mode: "always"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := ta.Provision(ctx); err == nil || !strings.Contains(err.Error(), "mode must be") {
		t.Fatalf("JSON mode always: %v", err)
	}
}
