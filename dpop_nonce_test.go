package tokenauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// Server nonces (RFC 9449 §8, §9), in process: with `nonce` a proof needs
// a current nonce of the realm, which every answer hands out; without it
// nonces are ignored as before.

// nonceHandler is a dpop-optional handler with nonces on, its key in
// storage (a directory shared by handlers given the same one).
func nonceHandler(t *testing.T, realm string, storage certmagic.Storage) *TokenAuth {
	t.Helper()
	ta := &TokenAuth{
		SigningKey:  &KeyConfig{Algorithm: "hs256", Key: testSecret},
		Store:       &StoreConfig{Backend: "memory"},
		Realm:       realm,
		Users:       []User{{ID: "alice", Password: testenv.Hash(t, "a")}},
		DPoP:        &DPoPConfig{Mode: dpopOptional, Nonce: true},
		testStorage: storage,
	}
	provisionInProcess(t, ta)
	return ta
}

// withNonce is a proof mutation carrying nonce.
func withNonce(nonce string) func(*testenv.ProofSpec) { return testenv.SetClaim("nonce", nonce) }

// dpopErrorCode is the data.error of an endpoint answer.
func dpopErrorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Data struct{ Error, Reason string }
	}
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if body.Data.Error != body.Data.Reason {
		t.Errorf("data.error %q and data.reason %q differ", body.Data.Error, body.Data.Reason)
	}
	return body.Data.Error
}

const loginBody = `{"strategy":"local","username":"alice","password":"a"}`

func nonceLogin(t *testing.T, ta *TokenAuth, c *dpopClient, mutate ...func(*testenv.ProofSpec)) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, ta, "POST", "/authentication", loginBody, "DPoP", c.Proof(t, "POST", dpopTestEndpoint, "", mutate...))
}

// wantUseNonce checks an endpoint answer is 400 use_dpop_nonce with a nonce.
func wantUseNonce(t *testing.T, what string, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code != http.StatusBadRequest || dpopErrorCode(t, w) != "use_dpop_nonce" || w.Header().Get("DPoP-Nonce") == "" {
		t.Fatalf("%s: %d %s, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", what, w.Code, w.Body, w.Header().Get("DPoP-Nonce"))
	}
	return w.Header().Get("DPoP-Nonce")
}

// TestDPoPNonceFlow: a login, a refresh and a resource request with a
// proof lacking the nonce are answered use_dpop_nonce with one in the
// DPoP-Nonce header; the proof with it is accepted, and every answer
// carries a fresh nonce.
func TestDPoPNonceFlow(t *testing.T) {
	ta := nonceHandler(t, "nonce-flow", &certmagic.FileStorage{Path: t.TempDir()})
	c := newDPoPClient(t, "ES256")

	nonce := wantUseNonce(t, "login without a nonce", nonceLogin(t, ta, c))
	w := nonceLogin(t, ta, c, withNonce(nonce))
	if w.Code != http.StatusCreated || w.Header().Get("DPoP-Nonce") == "" {
		t.Fatalf("login with the nonce: %d %s, DPoP-Nonce %q", w.Code, w.Body, w.Header().Get("DPoP-Nonce"))
	}
	var pair struct{ AccessToken, RefreshToken string }
	_ = json.Unmarshal(w.Body.Bytes(), &pair)

	refresh := `{"action":"refresh","refresh_token":"` + pair.RefreshToken + `"}`
	w = serve(t, ta, "POST", "/authentication", refresh, "DPoP", c.Proof(t, "POST", dpopTestEndpoint, ""))
	nonce = wantUseNonce(t, "refresh without a nonce", w)
	w = serve(t, ta, "POST", "/authentication", refresh, "DPoP", c.Proof(t, "POST", dpopTestEndpoint, "", withNonce(nonce)))
	if w.Code != http.StatusCreated {
		t.Fatalf("refresh with the nonce, after one refused: %d %s", w.Code, w.Body)
	}
	_ = json.Unmarshal(w.Body.Bytes(), &pair)

	get := func(mutate ...func(*testenv.ProofSpec)) *httptest.ResponseRecorder {
		return serve(t, ta, "GET", "/private", "", "Authorization", "DPoP "+pair.AccessToken,
			"DPoP", c.Proof(t, "GET", "http://example.com/private", pair.AccessToken, mutate...))
	}
	w = get()
	challenge := w.Header().Get("WWW-Authenticate")
	if w.Code != http.StatusUnauthorized || !strings.Contains(challenge, `error="use_dpop_nonce"`) || w.Header().Get("DPoP-Nonce") == "" {
		t.Fatalf("resource without a nonce: %d, WWW-Authenticate %q, DPoP-Nonce %q", w.Code, challenge, w.Header().Get("DPoP-Nonce"))
	}
	if w = get(withNonce(w.Header().Get("DPoP-Nonce"))); w.Code != http.StatusTeapot || w.Header().Get("DPoP-Nonce") == "" {
		t.Fatalf("resource with the nonce: %d, DPoP-Nonce %q", w.Code, w.Header().Get("DPoP-Nonce"))
	}
}

// TestDPoPNonceRefused: a forged nonce (another realm's key, a changed
// byte, not base64) or one two buckets old is refused; the previous
// bucket's is still accepted.
func TestDPoPNonceRefused(t *testing.T) {
	ta := nonceHandler(t, "nonce-refused", &certmagic.FileStorage{Path: t.TempDir()})
	other := nonceHandler(t, "nonce-refused", &certmagic.FileStorage{Path: t.TempDir()}) // same realm, its own key
	c := newDPoPClient(t, "ES256")
	window := time.Duration(ta.DPoP.resolved().IATWindow)
	// the server's clock stands in the middle of the current bucket, so
	// that no bucket ends during the test (proofs' iat stay in the window)
	mid := time.Now().Truncate(window).Add(window / 2)
	ta.now = func() time.Time { return mid }
	at := func(ago time.Duration) string {
		src := *ta.dpop.nonces
		src.now = func() time.Time { return mid.Add(-ago) }
		return src.current()
	}
	good := at(0)
	tampered, _ := base64.RawURLEncoding.DecodeString(good)
	tampered[20] ^= 1 // in the MAC
	prevBucketSameMAC, _ := base64.RawURLEncoding.DecodeString(good)
	prevBucketSameMAC[7]-- // the previous bucket, this bucket's MAC
	for what, nonce := range map[string]string{
		"another key's":    other.dpop.nonces.current(),
		"a changed byte":   base64.RawURLEncoding.EncodeToString(tampered),
		"another bucket":   base64.RawURLEncoding.EncodeToString(prevBucketSameMAC),
		"not base64":       "!!" + good,
		"two buckets old":  at(2 * window),
		"a bucket ahead":   at(-window),
		"empty":            "",
		"truncated":        good[:20],
		"bucket only":      good[:11],
		"another realm's":  (&nonceSource{key: ta.dpop.nonces.key, realm: "elsewhere", bucket: window, now: time.Now}).current(),
		"whitespace after": good + " ",
	} {
		wantUseNonce(t, "nonce "+what, nonceLogin(t, ta, c, withNonce(nonce)))
	}
	if w := nonceLogin(t, ta, c, withNonce(at(window))); w.Code != http.StatusCreated {
		t.Fatalf("the previous bucket's nonce: %d %s", w.Code, w.Body)
	}
}

// TestDPoPNonceAcrossInstances: two handlers sharing Caddy's storage (as
// instances do) share the generated key, so each accepts the other's
// nonces; the key is made once and kept.
func TestDPoPNonceAcrossInstances(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	a := nonceHandler(t, "nonce-shared", storage)
	b := nonceHandler(t, "nonce-shared", storage)
	c := newDPoPClient(t, "EdDSA")
	nonce := nonceLogin(t, a, c).Header().Get("DPoP-Nonce")
	if w := nonceLogin(t, b, c, withNonce(nonce)); w.Code != http.StatusCreated {
		t.Fatalf("instance b with instance a's nonce: %d %s", w.Code, w.Body)
	}
	if !storage.Exists(context.Background(), nonceKeyPath("nonce-shared")) {
		t.Fatalf("no nonce key at %s", nonceKeyPath("nonce-shared"))
	}
}

// TestDPoPNonceOff: without `nonce`, proofs need none and any nonce in
// them is ignored, and no DPoP-Nonce header is sent; a broken key in
// storage is a clear Provision error.
func TestDPoPNonceOff(t *testing.T) {
	ta := dpopHandler(t, dpopOptional)
	c := newDPoPClient(t, "ES256")
	for _, mutate := range []func(*testenv.ProofSpec){nil, withNonce("whatever")} {
		w := nonceLogin(t, ta, c, mutate)
		if w.Code != http.StatusCreated || w.Header().Get("DPoP-Nonce") != "" {
			t.Fatalf("nonce off: %d %s, DPoP-Nonce %q", w.Code, w.Body, w.Header().Get("DPoP-Nonce"))
		}
	}

	storage := &certmagic.FileStorage{Path: t.TempDir()}
	if err := storage.Store(context.Background(), nonceKeyPath("nonce-broken"), []byte("short\n")); err != nil {
		t.Fatal(err)
	}
	_, err := loadOrCreateNonceKey(context.Background(), storage, "nonce-broken", ta.logger)
	if err == nil || !strings.Contains(err.Error(), "dpop_nonce_key in storage") || !strings.Contains(err.Error(), "not 32 bytes of base64") {
		t.Fatalf("broken stored key: %v", err)
	}
}
