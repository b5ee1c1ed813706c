package tokenauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// Unit tests of the identity provider flow against fakeOP, a provider in
// this process whose ID tokens each test shapes, so that every attack on
// the ID token can be tried. The flow against a real OpenID provider
// process is tested end to end (e2e/idp_test.go).

const fakeClientID = "caddy-client"

// fakeOP is an OpenID provider speaking just enough: discovery, JWKS, a
// token endpoint that insists on PKCE, UserInfo.
type fakeOP struct {
	*httptest.Server
	key *rsa.PrivateKey

	mu        sync.Mutex
	challenge string                                // the last code_challenge the browser brought
	mint      func(c jwt.MapClaims) (string, error) // signs the ID token; default RS256 with key
	shape     func(c jwt.MapClaims)                 // changes the ID token's claims
	delay     time.Duration                         // the token endpoint's slowness
	userinfo  map[string]any                        // nil: no userinfo endpoint data
	nonce     string                                // the nonce of the current flow
	exchanged int                                   // token requests served
	tokenHook func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op := &fakeOP{key: key}
	op.Server = httptest.NewUnstartedServer(http.HandlerFunc(op.serve))
	return op
}

func (op *fakeOP) start(t *testing.T) *fakeOP {
	op.Start()
	t.Cleanup(op.Close)
	return op
}

func (op *fakeOP) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		writeTestJSON(w, map[string]any{
			"issuer": op.URL, "authorization_endpoint": op.URL + "/authorize", "token_endpoint": op.URL + "/token",
			"jwks_uri": op.URL + "/jwks", "userinfo_endpoint": op.URL + "/userinfo",
			// HS256 advertised: it must be refused all the same
			"id_token_signing_alg_values_supported": []string{"RS256", "HS256"},
		})
	case "/jwks":
		pub := op.key.PublicKey
		writeTestJSON(w, map[string]any{"keys": []map[string]any{{
			"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	case "/token":
		op.serveToken(w, r)
	case "/userinfo":
		op.mu.Lock()
		info := op.userinfo
		op.mu.Unlock()
		if info == nil {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		writeTestJSON(w, info)
	default:
		http.NotFound(w, r)
	}
}

func (op *fakeOP) serveToken(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	hook, delay, challenge := op.tokenHook, op.delay, op.challenge
	op.exchanged++
	op.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	_ = r.ParseForm()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != challenge || r.PostForm.Get("code") != "good-code" {
		w.WriteHeader(http.StatusBadRequest)
		writeTestJSON(w, map[string]string{"error": "invalid_grant"})
		return
	}
	idToken, err := op.idToken()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	writeTestJSON(w, map[string]any{"access_token": "provider-access", "token_type": "Bearer", "expires_in": 60, "id_token": idToken})
}

// idToken is a valid ID token for alice, unless shape or mint change it.
func (op *fakeOP) idToken() (string, error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": op.URL, "aud": fakeClientID, "sub": "alice-sub", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"nonce": op.nonce, "email": "alice@example.com", "email_verified": true, "name": "Alice A", "sid": "op-session-1",
	}
	if op.shape != nil {
		op.shape(c)
	}
	if op.mint != nil {
		return op.mint(c)
	}
	return op.sign(c, "")
}

// sign makes an RS256 JWT with the provider's key.
func (op *fakeOP) sign(c jwt.MapClaims, typ string) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = "k1"
	if typ != "" {
		tok.Header["typ"] = typ
	}
	return tok.SignedString(op.key)
}

func (op *fakeOP) set(f func(op *fakeOP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// idpHandler is a provisioned handler with the provider `fake` at op.
func idpHandler(t *testing.T, op *fakeOP, mutate ...func(*TokenAuth)) (*TokenAuth, *observer.ObservedLogs) {
	t.Helper()
	grace := caddy.Duration(0)
	ta := &TokenAuth{
		Realm:      "idp-" + strings.ReplaceAll(t.Name(), "/", "-"),
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: testSecret},
		Store:      &StoreConfig{Backend: "memory"},
		ReuseGrace: &grace,
		Users:      []User{{ID: "alice", Password: testenv.Hash(t, "pw"), Email: "alice@example.com", Roles: []string{"admin"}}},
		IdentityProviders: []IdentityProvider{{
			Name: "fake", Issuer: op.URL, ClientID: fakeClientID, ClientSecret: "s3cret", Label: "Fake",
			Timeout: caddy.Duration(2 * time.Second),
		}},
	}
	for _, m := range mutate {
		m(ta)
	}
	provisionInProcess(t, ta)
	core, logs := observer.New(zap.DebugLevel)
	ta.logger = zap.New(core)
	return ta, logs
}

// idpRequest is a request as Caddy's server hands it to the handler.
func idpRequest(method, target string, cookies ...*http.Cookie) *http.Request {
	return idpRequestBody(method, target, nil, cookies...)
}

func idpRequestBody(method, target string, body io.Reader, cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(method, target, body)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	r, _ = asCaddyRequest(r, "192.0.2.7")
	return r
}

// startedFlow is a sign-in sent to the provider.
type startedFlow struct {
	state   string
	binding *http.Cookie
	authURL *url.URL
}

// startSignIn does GET {endpoint}/idp/fake?query and checks the redirect
// to the provider; the provider learns the flow's challenge and nonce as a
// real one would from the authorization request.
func startSignIn(t *testing.T, ta *TokenAuth, op *fakeOP, query string) startedFlow {
	t.Helper()
	w := serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/fake?"+query))
	if w.Code != http.StatusFound {
		t.Fatalf("start: %d %s", w.Code, w.Body)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), op.URL+"/authorize?") || q.Get("client_id") != fakeClientID || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" ||
		q.Get("redirect_uri") != "http://example.com/authentication/idp/fake/callback" || q.Get("scope") != "openid email profile" {
		t.Fatalf("authorization request %s", loc)
	}
	op.set(func(op *fakeOP) { op.challenge, op.nonce = q.Get("code_challenge"), q.Get("nonce") })
	f := startedFlow{state: q.Get("state"), authURL: loc}
	for _, c := range w.Result().Cookies() {
		if c.Name == idpBindingCookie {
			f.binding = c
		}
	}
	if f.binding == nil || !f.binding.HttpOnly || f.binding.SameSite != http.SameSiteLaxMode || f.binding.Path != "/authentication/idp/" || f.binding.MaxAge <= 0 {
		t.Fatalf("binding cookie %+v", f.binding)
	}
	return f
}

// callback is the browser coming back from the provider.
func (f startedFlow) callback(t *testing.T, ta *TokenAuth, query string) *httptest.ResponseRecorder {
	t.Helper()
	if query == "" {
		query = "code=good-code&state=" + f.state
	}
	return serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/fake/callback?"+query, f.binding))
}

// sessionCookies returns the access and refresh cookies a response set.
func sessionCookies(w *httptest.ResponseRecorder) (access, refresh *http.Cookie) {
	for _, c := range w.Result().Cookies() {
		switch c.Name {
		case accessCookieName:
			access = c
		case refreshCookieName:
			refresh = c
		}
	}
	return access, refresh
}

// claimsOf reads a JWT's claims without verifying it.
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	_, c := testenv.JWTParts(t, tok)
	return c
}

// TestIdPSignIn: a verified email of a realm user signs in as that user,
// with a session like a password login's: cookies, amr ["fed"], the idp
// claim and placeholder, refresh rotation and reuse detection.
func TestIdPSignIn(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, logs := idpHandler(t, op)
	f := startSignIn(t, ta, op, "redirect=/private/page%3Fx%3D1")
	w := f.callback(t, ta, "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/private/page?x=1" {
		t.Fatalf("callback: %d %s %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	access, refresh := sessionCookies(w)
	if access == nil || refresh == nil || !access.HttpOnly || refresh.Path != "/authentication" {
		t.Fatalf("cookies %v %v", access, refresh)
	}
	c := claimsOf(t, access.Value)
	if c["sub"] != "alice" || c["idp"] != "fake" || c["email"] != "alice@example.com" {
		t.Fatalf("claims %v", c)
	}
	if amr, _ := c["amr"].([]any); len(amr) != 1 || amr[0] != "fed" {
		t.Fatalf("amr %v", c["amr"])
	}
	if logs.FilterMessage("login succeeded").FilterField(zap.String("idp", "fake")).Len() != 1 {
		t.Fatalf("no success log: %v", logs.All())
	}

	// the guard accepts it and sets {http.auth.user.idp}
	r := idpRequest("GET", "/private/page", access)
	gw := serveTeapot(t, ta, r)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	idp, _ := repl.GetString("http.auth.user.idp")
	id, _ := repl.GetString("http.auth.user.id")
	if gw.Code != http.StatusTeapot || idp != "fake" || id != "alice" {
		t.Fatalf("guard: %d idp %q id %q", gw.Code, idp, id)
	}

	// the session is the realm's: stored with how it was signed in
	s, err := ta.realm.store.Get(context.Background(), c["sid"].(string))
	if err != nil || s.IdP != "fake" || s.IdPSID != "op-session-1" || len(s.AMR) != 1 || s.AMR[0] != "fed" {
		t.Fatalf("session %+v %v", s, err)
	}

	// refresh rotates and keeps the claims; the spent token again is reuse
	first := refreshJSON(t, ta, refresh.Value)
	if first.Code != http.StatusCreated {
		t.Fatalf("refresh: %d %s", first.Code, first.Body)
	}
	var pair struct{ AccessToken, RefreshToken string }
	_ = json.Unmarshal(first.Body.Bytes(), &pair)
	if c := claimsOf(t, pair.AccessToken); c["idp"] != "fake" || c["sub"] != "alice" {
		t.Fatalf("refreshed claims %v", c)
	}
	again := refreshJSON(t, ta, refresh.Value)
	if again.Code != http.StatusUnauthorized || !strings.Contains(again.Body.String(), "refresh_token_reused") {
		t.Fatalf("reuse: %d %s", again.Code, again.Body)
	}
	if refreshJSON(t, ta, pair.RefreshToken).Code != http.StatusUnauthorized {
		t.Fatal("the session survived reuse detection")
	}
}

func refreshJSON(t *testing.T, ta *TokenAuth, rt string) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, ta, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+rt+`"}`)
}

// TestIdPAllowList: allow_domain/allow_email admit people without a realm
// user as <name>:<sub> with the configured roles; their sessions refresh
// and re-authenticate; others are refused.
func TestIdPAllowList(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, logs := idpHandler(t, op, func(ta *TokenAuth) {
		ta.IdentityProviders[0].AllowDomains = []string{"partner.example"}
		ta.IdentityProviders[0].AllowEmails = []string{"guest@elsewhere.example"}
		ta.IdentityProviders[0].Roles = []string{"partner"}
	})
	for _, email := range []string{"bob@partner.example", "guest@elsewhere.example"} {
		op.set(func(op *fakeOP) { op.shape = func(c jwt.MapClaims) { c["email"], c["sub"] = email, "sub-"+email } })
		w := startSignIn(t, ta, op, "").callback(t, ta, "")
		access, refresh := sessionCookies(w)
		if w.Code != http.StatusSeeOther || access == nil {
			t.Fatalf("%s: %d %s", email, w.Code, w.Header().Get("Location"))
		}
		c := claimsOf(t, access.Value)
		if c["sub"] != "fake:sub-"+email || c["email"] != email || c["roles"].([]any)[0] != "partner" {
			t.Fatalf("%s: claims %v", email, c)
		}
		if res := refreshJSON(t, ta, refresh.Value); res.Code != http.StatusCreated {
			t.Fatalf("%s: refresh %d %s", email, res.Code, res.Body)
		}
		reauth := serve(t, ta, "POST", "/authentication", `{"strategy":"jwt","accessToken":"`+access.Value+`"}`)
		if reauth.Code != http.StatusCreated || !strings.Contains(reauth.Body.String(), `"id":"fake:sub-`+email) {
			t.Fatalf("%s: reauthenticate %d %s", email, reauth.Code, reauth.Body)
		}
	}
	// a verified address outside the lists, with no realm user
	op.set(func(op *fakeOP) { op.shape = func(c jwt.MapClaims) { c["email"] = "mallory@evil.example" } })
	w := startSignIn(t, ta, op, "redirect=/x").callback(t, ta, "")
	wantRefused(t, w, "/authentication?error=idp_failed&redirect=%2Fx")
	if logs.FilterMessage("login failed").FilterField(zap.String("client_ip", "192.0.2.7")).Len() != 1 {
		t.Fatalf("refusal not logged for fail2ban: %v", logs.All())
	}
}

func wantRefused(t *testing.T, w *httptest.ResponseRecorder, location string) {
	t.Helper()
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != location {
		t.Fatalf("want 303 to %s, got %d %s %s", location, w.Code, w.Header().Get("Location"), w.Body)
	}
	if a, r := sessionCookies(w); a != nil || r != nil {
		t.Fatal("cookies set on a refused sign-in")
	}
}

// TestIdPRefusesBadIDTokens: each forged or unfit ID token is refused,
// the person lands on the login page with error=idp_failed, and the log
// says why.
func TestIdPRefusesBadIDTokens(t *testing.T) {
	op := newFakeOP(t).start(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&op.key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	cases := []struct {
		name   string
		shape  func(c jwt.MapClaims)
		mint   func(c jwt.MapClaims) (string, error)
		reason string
	}{
		{name: "nonce mismatch", shape: func(c jwt.MapClaims) { c["nonce"] = "another-flow" }, reason: "nonce mismatch"},
		{name: "no nonce", shape: func(c jwt.MapClaims) { delete(c, "nonce") }, reason: "nonce mismatch"},
		{name: "another issuer", shape: func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }, reason: "different provider"},
		{name: "another audience", shape: func(c jwt.MapClaims) { c["aud"] = "other-client" }, reason: "expected audience"},
		{name: "several audiences without azp", shape: func(c jwt.MapClaims) { c["aud"] = []string{fakeClientID, "other"} }, reason: "authorized party"},
		{name: "azp another client", shape: func(c jwt.MapClaims) { c["azp"] = "other" }, reason: "authorized party"},
		{name: "expired", shape: func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }, reason: "expired"},
		{name: "issued in the future", shape: func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() }, reason: "future"},
		{name: "issued long ago", shape: func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-time.Hour).Unix() }, reason: "too long ago"},
		{name: "no iat", shape: func(c jwt.MapClaims) { delete(c, "iat") }, reason: "no iat"},
		{name: "email not verified", shape: func(c jwt.MapClaims) { c["email_verified"] = false }, reason: "email not verified"},
		{name: "email_verified missing", shape: func(c jwt.MapClaims) { delete(c, "email_verified") }, reason: "email not verified"},
		{name: "alg none", mint: func(c jwt.MapClaims) (string, error) {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
			return tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		}, reason: "malformed jwt"},
		{name: "HS256 with the public key", mint: func(c jwt.MapClaims) (string, error) {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
			tok.Header["kid"] = "k1"
			return tok.SignedString(pubPEM)
		}, reason: "malformed jwt"},
		{name: "signed by another key", mint: func(c jwt.MapClaims) (string, error) {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
			tok.Header["kid"] = "k1"
			return tok.SignedString(other)
		}, reason: "signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ta, logs := idpHandler(t, op)
			op.set(func(op *fakeOP) { op.shape, op.mint = c.shape, c.mint })
			w := startSignIn(t, ta, op, "redirect=/private/").callback(t, ta, "")
			wantRefused(t, w, "/authentication?error=idp_failed&redirect=%2Fprivate%2F")
			refusal := logs.FilterMessage("login failed").FilterField(zap.String("idp", "fake"))
			if refusal.Len() != 1 || !strings.Contains(refusal.All()[0].ContextMap()["reason"].(string), c.reason) {
				t.Fatalf("log %v, want reason with %q", logs.All(), c.reason)
			}
		})
	}
	op.set(func(op *fakeOP) { op.shape, op.mint = nil, nil })
}

// TestIdPProviderErrors: an error from the provider, a missing code, a
// code the provider refuses, and a provider slower than the timeout all
// end on the login page.
func TestIdPProviderErrors(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op, func(ta *TokenAuth) { ta.IdentityProviders[0].Timeout = caddy.Duration(200 * time.Millisecond) })
	for _, q := range []string{"error=access_denied&error_description=no", "", "code=bad-code"} {
		f := startSignIn(t, ta, op, "")
		wantRefused(t, f.callback(t, ta, q+"&state="+f.state), "/authentication?error=idp_failed")
	}
	op.set(func(op *fakeOP) { op.delay = 1500 * time.Millisecond }) // beyond the 200ms timeout
	defer op.set(func(op *fakeOP) { op.delay = 0 })
	f := startSignIn(t, ta, op, "")
	wantRefused(t, f.callback(t, ta, ""), "/authentication?error=idp_failed")
}

// TestIdPStateAttacks: a callback without state, with a reused state, or
// in another browser than the one that started the sign-in is 400 with a
// page saying so, and never reaches the provider's token endpoint.
func TestIdPStateAttacks(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	want400 := func(what string, w *httptest.ResponseRecorder) {
		t.Helper()
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not valid any more") || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s", what, w.Code, w.Body)
		}
		if a, _ := sessionCookies(w); a != nil {
			t.Fatalf("%s: cookies set", what)
		}
	}
	f := startSignIn(t, ta, op, "")
	want400("no state", f.callback(t, ta, "code=good-code"))
	want400("unknown state", f.callback(t, ta, "code=good-code&state=forged"))

	// another browser: no binding cookie, or its own
	f = startSignIn(t, ta, op, "")
	theirs := startSignIn(t, ta, op, "").binding
	want400("another browser's cookie", serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/fake/callback?code=good-code&state="+f.state, theirs)))
	f = startSignIn(t, ta, op, "")
	want400("no cookie", serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/fake/callback?code=good-code&state="+f.state)))

	op.set(func(op *fakeOP) { op.exchanged = 0 })
	f = startSignIn(t, ta, op, "")
	if w := f.callback(t, ta, ""); w.Code != http.StatusSeeOther {
		t.Fatalf("good callback: %d", w.Code)
	}
	want400("reused state", f.callback(t, ta, ""))
	op.set(func(op *fakeOP) {
		if op.exchanged != 1 {
			t.Errorf("token endpoint called %d times, want 1", op.exchanged)
		}
	})
}

// TestIdPRedirectIsSanitized: `redirect` pointing elsewhere becomes "/",
// in both modes.
func TestIdPRedirectIsSanitized(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	for _, target := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		w := startSignIn(t, ta, op, url.Values{"redirect": {target}}.Encode()).callback(t, ta, "")
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
			t.Fatalf("%s: %d %s", target, w.Code, w.Header().Get("Location"))
		}
		w = startSignIn(t, ta, op, url.Values{"redirect": {target}, "mode": {"fragment"}}.Encode()).callback(t, ta, "")
		if !strings.HasPrefix(w.Header().Get("Location"), "/#access_token=") {
			t.Fatalf("%s fragment: %s", target, w.Header().Get("Location"))
		}
	}
}

// TestIdPFragmentMode: mode=fragment hands the tokens to a single-page
// app in the URL fragment, sets no cookie, and reports errors as #error=.
func TestIdPFragmentMode(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	w := startSignIn(t, ta, op, "redirect=/app/%23old&mode=fragment").callback(t, ta, "")
	loc := w.Header().Get("Location")
	path, frag, _ := strings.Cut(loc, "#")
	vals, _ := url.ParseQuery(frag)
	if w.Code != http.StatusSeeOther || path != "/app/" || vals.Get("access_token") == "" || vals.Get("refresh_token") == "" {
		t.Fatalf("fragment answer %d %s", w.Code, loc)
	}
	if a, r := sessionCookies(w); a != nil || r != nil {
		t.Fatal("cookies set in fragment mode")
	}
	// the tokens are the realm's: the guard takes the access token, the endpoint the refresh token
	if g := serveTeapot(t, ta, withBearer(idpRequest("GET", "/private/"), vals.Get("access_token"))); g.Code != http.StatusTeapot {
		t.Fatalf("guard: %d", g.Code)
	}
	if res := refreshJSON(t, ta, vals.Get("refresh_token")); res.Code != http.StatusCreated {
		t.Fatalf("refresh: %d %s", res.Code, res.Body)
	}

	op.set(func(op *fakeOP) { op.shape = func(c jwt.MapClaims) { c["email_verified"] = false } })
	defer op.set(func(op *fakeOP) { op.shape = nil })
	w = startSignIn(t, ta, op, "redirect=/app/&mode=fragment").callback(t, ta, "")
	if w.Header().Get("Location") != "/app/#error=idp_failed" {
		t.Fatalf("fragment error: %s", w.Header().Get("Location"))
	}
}

func withBearer(r *http.Request, tok string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// TestIdPUserInfo: a provider that keeps the email out of the ID token
// (as zitadel's does) is asked at its UserInfo endpoint, whose sub must be
// the ID token's.
func TestIdPUserInfo(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	op.set(func(op *fakeOP) {
		op.shape = func(c jwt.MapClaims) { delete(c, "email"); delete(c, "email_verified") }
		op.userinfo = map[string]any{"sub": "alice-sub", "email": "alice@example.com", "email_verified": true}
	})
	if w := startSignIn(t, ta, op, "").callback(t, ta, ""); w.Header().Get("Location") != "/" {
		t.Fatalf("userinfo sign-in: %d %s", w.Code, w.Header().Get("Location"))
	}
	op.set(func(op *fakeOP) { op.userinfo["sub"] = "someone-else" })
	wantRefused(t, startSignIn(t, ta, op, "").callback(t, ta, ""), "/authentication?error=idp_failed")
}

// TestIdPDiscoveryRetry: a provider unreachable at start does not stop
// the handler from starting; its button answers 503 with a page until
// discovery succeeds in the background.
func TestIdPDiscoveryRetry(t *testing.T) {
	op := newFakeOP(t) // not started: discovery fails
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there for now
	op.URL = "http://" + addr
	ta, _ := idpHandler(t, op)
	w := serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/fake"))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "Fake cannot be reached") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("before discovery: %d %s", w.Code, w.Body)
	}
	// the login page still works, with the button
	if page := serveTeapot(t, ta, idpRequest("GET", "/authentication")); page.Code != http.StatusOK || !strings.Contains(page.Body.String(), "Sign in with Fake") {
		t.Fatalf("login page: %d", page.Code)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	op.Listener.Close()
	op.Listener, op.URL = l, ""
	op.start(t)
	testenv.Eventually(t, 30*time.Second, "discovery retried", func() bool {
		return serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/fake")).Code == http.StatusFound
	})
	startSignIn(t, ta, op, "").callback(t, ta, "")
}

// TestIdPEndpointRoutes: unknown providers and actions are 404, wrong
// methods 405.
func TestIdPEndpointRoutes(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/authentication/idp/nobody", 404},
		{"GET", "/authentication/idp/fake/other", 404},
		{"POST", "/authentication/idp/fake", 405},
		{"GET", "/authentication/idp/fake/backchannel-logout", 405},
		{"POST", "/authentication/idp/fake/callback", 405},
	} {
		if w := serveTeapot(t, ta, idpRequest(c.method, c.path)); w.Code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, w.Code, c.code)
		}
	}
}

// TestIdPLoginPage: one button per provider, carrying the redirect; the
// password form only when the realm has password users; custom templates
// get the list.
func TestIdPLoginPage(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op, func(ta *TokenAuth) {
		ta.IdentityProviders = append(ta.IdentityProviders, IdentityProvider{Name: "gh", GitHub: &GitHubProvider{}, ClientID: "x", Label: "GitHub"})
	})
	body := serveTeapot(t, ta, idpRequest("GET", "/authentication?redirect=/docs/&error=idp_failed")).Body.String()
	for _, want := range []string{
		`<a class="idp" href="/authentication/idp/fake?redirect=%2Fdocs%2F">Sign in with Fake</a>`,
		`<a class="idp" href="/authentication/idp/gh?redirect=%2Fdocs%2F">Sign in with GitHub</a>`,
		`name="password"`, "did not work",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("login page lacks %s:\n%s", want, body)
		}
	}
	noPasswords, _ := idpHandler(t, op, func(ta *TokenAuth) { ta.Users = nil })
	if body := serveTeapot(t, noPasswords, idpRequest("GET", "/authentication")).Body.String(); strings.Contains(body, `name="password"`) || !strings.Contains(body, "Sign in with Fake") {
		t.Fatalf("realm without password users:\n%s", body)
	}
}
