package tokenauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
)

// Fixtures shared by the unit tests: keys and secrets, token services, and
// handlers provisioned in process (no Caddy process; those tests are in e2e/).

// hs256Config is the handler config most unit tests start from: HS256 with
// testSecret, a memory store, the given realm and users. Tests change what
// they need, then provision it (provisionInProcess).
func hs256Config(realm string, users ...User) *TokenAuth {
	return &TokenAuth{
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: testSecret},
		Store:      &StoreConfig{Backend: "memory"},
		Realm:      realm,
		Users:      users,
	}
}

// b64s is the base64url (unpadded) form of s, as in a JWT.
func b64s(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// hmacSign is the HS256 signature of a JWT's signing input.
func hmacSign(key []byte, input string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Test keys are generated once per test binary: RSA generation is slow
// under the race detector.
var (
	testKeysOnce sync.Once
	testEdKey    ed25519.PrivateKey
	testECKey    *ecdsa.PrivateKey
	testRSAKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) (ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	testKeysOnce.Do(func() {
		var err error
		_, testEdKey, _ = ed25519.GenerateKey(rand.Reader)
		if testECKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if testRSAKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testEdKey, testECKey, testRSAKey
}

func pemOf(t testing.TB, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8PEM(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PRIVATE KEY", der)
}

func pkixPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der)
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

func testService(t testing.TB, signing KeyConfig, verify ...KeyConfig) *tokenService {
	t.Helper()
	ring, err := newKeyRing(signing, verify)
	if err != nil {
		t.Fatal(err)
	}
	return newTokenService(ring, "test-issuer", "test-aud", time.Minute)
}

func issueTestToken(t testing.TB, ts *tokenService) string {
	t.Helper()
	tok, _, err := ts.issueAccess(&User{ID: "alice"}, "sid-1", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func headerOf(t testing.TB, tok string) map[string]any {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header
}

// provisionInProcess provisions a handler as Caddy would, for tests that
// drive ServeHTTP directly.
func provisionInProcess(t *testing.T, ta *TokenAuth) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := ta.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ta.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ta.Cleanup() })
}

// serve drives ServeHTTP with a request as Caddy's server would prepare it.
// asCaddyRequest gives r what Caddy's server gives a request before the
// handler sees it: a Replacer (returned, to read placeholders) and the
// client IP Caddy derived.
func asCaddyRequest(r *http.Request, clientIP string) (*http.Request, *caddy.Replacer) {
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: clientIP})
	return r.WithContext(ctx), repl
}

// serveTeapot runs r through ta with a next handler that answers 418, so
// a guarded request that got through is told from one the guard answered.
func serveTeapot(t *testing.T, ta *TokenAuth, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := ta.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

func serve(t *testing.T, ta *TokenAuth, method, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := ta.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return w
}
