package tokenauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func TestKeysCaddyfile(t *testing.T) {
	ta := new(TokenAuth)
	d := caddyfile.NewTestDispenser(`token_auth {
		signing_key ES256 /etc/caddy/new.pem
		verify_key kid-a ed25519 /etc/caddy/old.pem
		verify_key kid-b RS256 {env.OLD_RSA}
		verify_key auto hs256 {env.OLD_SECRET}
	}`)
	if err := ta.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if want := (&KeyConfig{Algorithm: "es256", Key: "/etc/caddy/new.pem"}); !reflect.DeepEqual(ta.SigningKey, want) {
		t.Fatalf("signing key %+v", ta.SigningKey)
	}
	want := []KeyConfig{
		{KID: "kid-a", Algorithm: "ed25519", Key: "/etc/caddy/old.pem"},
		{KID: "kid-b", Algorithm: "rs256", Key: "{env.OLD_RSA}"},
		{KID: "auto", Algorithm: "hs256", Key: "{env.OLD_SECRET}"},
	}
	if !reflect.DeepEqual(ta.VerifyKeys, want) {
		t.Fatalf("verify keys %+v", ta.VerifyKeys)
	}
	// the JSON config carries them as the JSON API documents them
	data, _ := json.Marshal(ta)
	for _, s := range []string{`"signing_key":{"algorithm":"es256","key":"/etc/caddy/new.pem"}`, `{"algorithm":"ed25519","key":"/etc/caddy/old.pem","kid":"kid-a"}`} {
		if !strings.Contains(string(data), s) {
			t.Fatalf("JSON %s lacks %s", data, s)
		}
	}

	none := new(TokenAuth)
	if err := none.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`token_auth {
		realm r
	}`)); err != nil || none.SigningKey != nil {
		t.Fatalf("no signing_key: %+v, %v", none.SigningKey, err)
	}

	for _, bad := range []string{
		"signing_key ed25519",
		"signing_key ed25519 a b",
		"signing_key ps256 /k.pem",
		"signing_key none x",
		"verify_key kid ed25519",
		"verify_key ed25519 /k.pem",
		"verify_key kid hs512 secret",
		"verify_key kid ed25519 /k.pem extra",
	} {
		err := new(TokenAuth).UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + bad + "\n}"))
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

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
