package tokenauth

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// logoutToken is a valid logout token of fakeOP for its session
// op-session-1 of alice-sub, changed by shape.
func (op *fakeOP) logoutToken(t *testing.T, shape func(c jwt.MapClaims)) string {
	t.Helper()
	c := jwt.MapClaims{
		"iss": op.URL, "aud": fakeClientID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
		"jti": randomID(), "sid": "op-session-1", "sub": "alice-sub",
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
	if shape != nil {
		shape(c)
	}
	tok, err := op.sign(c, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func postLogout(t *testing.T, ta *TokenAuth, token string) *httptest.ResponseRecorder {
	t.Helper()
	body := strings.NewReader(url.Values{"logout_token": {token}}.Encode())
	r := idpRequestBody("POST", "/authentication/idp/fake/backchannel-logout", body)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return serveTeapot(t, ta, r)
}

// signedInAccess signs alice in through fakeOP and returns her access token.
func signedInAccess(t *testing.T, ta *TokenAuth, op *fakeOP) string {
	t.Helper()
	access, _ := sessionCookies(startSignIn(t, ta, op, "").callback(t, ta, ""))
	if access == nil {
		t.Fatal("sign-in failed")
	}
	return access.Value
}

func guardStatus(t *testing.T, ta *TokenAuth, access string) int {
	t.Helper()
	return serveTeapot(t, ta, withBearer(idpRequest("GET", "/private/"), access)).Code
}

// TestBackchannelLogout: a logout token from the provider for a provider
// session revokes our sessions from it, and only those; replayed and
// forged tokens are refused with 400.
func TestBackchannelLogout(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	access := signedInAccess(t, ta, op)
	op.set(func(op *fakeOP) { op.shape = func(c jwt.MapClaims) { c["sid"] = "op-session-2" } })
	other := signedInAccess(t, ta, op)
	op.set(func(op *fakeOP) { op.shape = nil })

	logout := op.logoutToken(t, nil)
	if w := postLogout(t, ta, logout); w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if guardStatus(t, ta, access) != http.StatusUnauthorized {
		t.Fatal("the session of the provider session is still accepted")
	}
	if guardStatus(t, ta, other) != http.StatusTeapot {
		t.Fatal("a session of another provider session was revoked")
	}
	if w := postLogout(t, ta, logout); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "replayed") {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}

	// without sid: every session of that person at the provider
	if w := postLogout(t, ta, op.logoutToken(t, func(c jwt.MapClaims) { delete(c, "sid") })); w.Code != http.StatusOK {
		t.Fatalf("logout by sub: %d %s", w.Code, w.Body)
	}
	if guardStatus(t, ta, other) != http.StatusUnauthorized {
		t.Fatal("logout by sub left a session")
	}
}

// TestBackchannelLogoutRefusals: each malformed or forged logout token is
// 400 and revokes nothing.
func TestBackchannelLogoutRefusals(t *testing.T) {
	op := newFakeOP(t).start(t)
	ta, _ := idpHandler(t, op)
	access := signedInAccess(t, ta, op)
	forger, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := func() string {
		c := jwt.MapClaims{"iss": op.URL, "aud": fakeClientID, "iat": time.Now().Unix(), "jti": "j", "sid": "op-session-1",
			"events": map[string]any{backchannelLogoutEvent: map[string]any{}}}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = "k1"
		s, _ := tok.SignedString(forger)
		return s
	}()
	for name, tok := range map[string]string{
		"forged signature": forged,
		"another issuer":   op.logoutToken(t, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
		"another audience": op.logoutToken(t, func(c jwt.MapClaims) { c["aud"] = "other" }),
		"no events":        op.logoutToken(t, func(c jwt.MapClaims) { delete(c, "events") }),
		"other event":      op.logoutToken(t, func(c jwt.MapClaims) { c["events"] = map[string]any{"urn:x": map[string]any{}} }),
		"event not object": op.logoutToken(t, func(c jwt.MapClaims) { c["events"] = map[string]any{backchannelLogoutEvent: "yes"} }),
		"nonce":            op.logoutToken(t, func(c jwt.MapClaims) { c["nonce"] = "n" }),
		"no sid nor sub":   op.logoutToken(t, func(c jwt.MapClaims) { delete(c, "sid"); delete(c, "sub") }),
		"no jti":           op.logoutToken(t, func(c jwt.MapClaims) { delete(c, "jti") }),
		"no iat":           op.logoutToken(t, func(c jwt.MapClaims) { delete(c, "iat") }),
		"old iat":          op.logoutToken(t, func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-time.Hour).Unix() }),
		"expired":          op.logoutToken(t, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Second).Unix() }),
		"not a JWT":        "garbage",
		"missing":          "",
	} {
		if w := postLogout(t, ta, tok); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"error":"invalid_request"`) {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	if guardStatus(t, ta, access) != http.StatusTeapot {
		t.Fatal("a refused logout token revoked the session")
	}
	// not a form
	r := idpRequest("POST", "/authentication/idp/fake/backchannel-logout")
	r.Header.Set("Content-Type", "application/json")
	if w := serveTeapot(t, ta, r); w.Code != http.StatusBadRequest {
		t.Fatalf("json body: %d", w.Code)
	}
}
