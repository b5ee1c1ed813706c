package tokenauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestKeysJWKSDocument(t *testing.T) {
	ed, ec, rk := testKeys(t)
	// HMAC only: an empty set, never the secret
	hs := testService(t, KeyConfig{Algorithm: "hs256", Key: testSecret}, KeyConfig{KID: "old", Algorithm: "hs256", Key: testSecret + "-old"})
	if string(hs.keys.jwks) != `{"keys":[]}` {
		t.Fatalf("HMAC-only JWKS %s", hs.keys.jwks)
	}
	// signing key first, then verify keys; public members only
	edKID := mustKID(t, "ed25519", pkcs8PEM(t, ed))
	ts := testService(t, KeyConfig{Algorithm: "es256", Key: pkcs8PEM(t, ec)},
		KeyConfig{KID: edKID, Algorithm: "ed25519", Key: pkcs8PEM(t, ed)},
		KeyConfig{KID: "legacy-rsa", Algorithm: "rs256", Key: pkixPEM(t, &rk.PublicKey)},
		KeyConfig{KID: "hs", Algorithm: "hs256", Key: testSecret})
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(ts.keys.jwks, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("JWKS %s", ts.keys.jwks)
	}
	wantKIDs := []string{ts.keys.signer.kid, edKID, "legacy-rsa"}
	wantAlgs := []string{"ES256", "EdDSA", "RS256"}
	wantKty := []string{"EC", "OKP", "RSA"}
	for i, k := range set.Keys {
		if k["kid"] != wantKIDs[i] || k["alg"] != wantAlgs[i] || k["kty"] != wantKty[i] || k["use"] != "sig" {
			t.Errorf("key %d: %v", i, k)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %d has private member %q", i, private)
			}
		}
	}
	if strings.Contains(string(ts.keys.jwks), testSecret) {
		t.Fatal("JWKS carries the HMAC secret")
	}

	// the handler serves it with cache headers, GET and HEAD only
	ta := &TokenAuth{Endpoint: "/auth", tokens: ts, logger: zap.NewNop()}
	for _, c := range []struct {
		method string
		status int
		body   string
	}{{"GET", 200, string(ts.keys.jwks)}, {"HEAD", 200, ""}, {"POST", 405, ""}, {"DELETE", 405, ""}} {
		rec := httptest.NewRecorder()
		if err := ta.ServeHTTP(rec, httptest.NewRequest(c.method, "/auth/jwks.json", nil), nil); err != nil {
			t.Fatal(err)
		}
		if rec.Code != c.status {
			t.Fatalf("%s: status %d", c.method, rec.Code)
		}
		if c.status == 200 {
			if rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "public, max-age=300" {
				t.Fatalf("%s: headers %v", c.method, rec.Header())
			}
			if rec.Body.String() != c.body {
				t.Fatalf("%s: body %q", c.method, rec.Body.String())
			}
		} else if rec.Header().Get("Allow") != "GET, HEAD" {
			t.Fatalf("%s: Allow %q", c.method, rec.Header().Get("Allow"))
		}
	}
	rec := httptest.NewRecorder()
	_ = ta.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/auth/jwks.json/x", nil), nil)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("/auth/jwks.json/x: %d", rec.Code)
	}
}

func mustKID(t testing.TB, alg, pemText string) string {
	t.Helper()
	k, err := loadKey(KeyConfig{Algorithm: alg, Key: pemText}, true)
	if err != nil {
		t.Fatal(err)
	}
	return k.kid
}
