package tokenauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// The test client's key and proofs are testenv's, shared with e2e.
type (
	dpopClient = testenv.DPoPClient
	proofSpec  = testenv.ProofSpec
)

var (
	newDPoPClient = testenv.NewDPoPClient
	jwkMembers    = testenv.JWKMembers
)

// claimsOnce is a replay cache in a map, for the unit tests of the
// verifier alone (the realm's stores are tested with it in dpop_flow_test.go).
type claimsOnce struct {
	mu   sync.Mutex
	seen map[string]time.Duration
	err  error
}

func (c *claimsOnce) ClaimTemp(_ context.Context, key string, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false, c.err
	}
	if c.seen == nil {
		c.seen = map[string]time.Duration{}
	}
	if _, ok := c.seen[key]; ok {
		return false, nil
	}
	c.seen[key] = ttl
	return true, nil
}

func testVerifier(replay replayCache) *dpopVerifier {
	cfg := (*DPoPConfig)(nil).resolved()
	return newDPoPVerifier(cfg, replay, time.Now)
}

// proofRequest is a request to url carrying proof (when not "") as its
// DPoP header, prepared as Caddy's server would (a replacer, and the
// original request).
func proofRequest(method, url, proof string) *http.Request {
	r := httptest.NewRequest(method, url, nil)
	if proof != "" {
		r.Header.Set("DPoP", proof)
	}
	orig, u := *r, *r.URL // as Caddy keeps it: a copy with its own URL
	orig.URL = &u
	ctx := context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, orig)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return r.WithContext(ctx)
}

// TestDPoPProofAccepted: a proof by each accepted algorithm verifies and
// gives the key's RFC 7638 thumbprint, as go-jose computes it.
func TestDPoPProofAccepted(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "Ed25519", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			c := newDPoPClient(t, alg)
			v := testVerifier(&claimsOnce{})
			jkt, err := v.verifyProof(proofRequest("POST", "http://example.com/authentication", c.Proof(t, "POST", "http://example.com/authentication", "")), "")
			if err != nil {
				t.Fatal(err)
			}
			if jkt != c.Thumbprint(t) {
				t.Fatalf("jkt %s, want %s", jkt, c.Thumbprint(t))
			}
		})
	}
}

// TestDPoPProofRefused: every rule of RFC 9449 §4.3, bent one at a time,
// is a refusal (errBadProof), and nothing refused is recorded as used.
func TestDPoPProofRefused(t *testing.T) {
	es := newDPoPClient(t, "ES256")
	other := newDPoPClient(t, "ES256")
	ed := newDPoPClient(t, "EdDSA")
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const url = "http://example.com/private/x"
	const token = "the.access.token"
	cases := map[string]struct {
		client *dpopClient
		mutate func(*proofSpec)
		raw    string // sent as is instead of a signed proof
		req    func(*http.Request)
		want   string // in the error
	}{
		"typ missing": {mutate: func(p *proofSpec) { delete(p.Header, "typ") }, want: "typ"},
		"typ jwt":     {mutate: func(p *proofSpec) { p.Header["typ"] = "JWT" }, want: "typ"},
		"typ at+jwt":  {mutate: func(p *proofSpec) { p.Header["typ"] = "at+jwt" }, want: "typ"},
		"alg HS256": {mutate: func(p *proofSpec) {
			p.Method, p.Key = jwt.SigningMethodHS256, []byte("a shared secret of thirty-two bytes!")
		}, want: "signing method HS256 is invalid"},
		"alg none":       {mutate: func(p *proofSpec) { p.Method, p.Key = jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType }, want: "signing method none is invalid"},
		"alg ES384":      {mutate: func(p *proofSpec) { p.Method, p.Key = jwt.SigningMethodES384, mustECKey(t, elliptic.P384()) }, want: "signing method ES384 is invalid"},
		"alg PS256":      {mutate: func(p *proofSpec) { p.Method, p.Key = jwt.SigningMethodPS256, mustRSAKey(t) }, want: "signing method PS256 is invalid"},
		"jwk missing":    {mutate: func(p *proofSpec) { delete(p.Header, "jwk") }, want: "no jwk"},
		"jwk a string":   {mutate: func(p *proofSpec) { p.Header["jwk"] = "key" }, want: "no jwk"},
		"jwk private":    {mutate: func(p *proofSpec) { p.Header["jwk"] = jwkMembers(t, es.Signer) }, want: `"d" member`},
		"jwk symmetric":  {mutate: func(p *proofSpec) { p.Header["jwk"] = map[string]any{"kty": "oct", "k": "c2VjcmV0"} }, want: `"k" member`},
		"jwk x5c":        {mutate: func(p *proofSpec) { p.Header["jwk"].(map[string]any)["x5c"] = []string{"MIIB"} }, want: `"x5c" member`},
		"jwk unknown":    {mutate: func(p *proofSpec) { p.Header["jwk"] = map[string]any{"kty": "XYZ"} }, want: "jwk:"},
		"jwk off curve":  {mutate: func(p *proofSpec) { p.Header["jwk"].(map[string]any)["y"] = b64url.EncodeToString(make([]byte, 32)) }, want: "jwk:"},
		"another key":    {mutate: func(p *proofSpec) { p.Header["jwk"] = other.JWK(t) }, want: "signature is invalid"},
		"key not alg":    {client: ed, mutate: func(p *proofSpec) { p.Header["jwk"] = es.JWK(t) }, want: "does not fit alg EdDSA"},
		"ES256 on P-384": {mutate: func(p *proofSpec) { p.Header["jwk"], p.Method = jwkMembers(t, p384.Public()), anySignature{"ES256"} }, want: "does not fit alg ES256"},
		"RSA 1024": {mutate: func(p *proofSpec) {
			p.Method, p.Key, p.Header["jwk"] = jwt.SigningMethodRS256, weakRSA, jwkMembers(t, weakRSA.Public())
		}, want: "1024 bits"},
		"htm other":      {mutate: func(p *proofSpec) { p.Claims["htm"] = "POST" }, want: "htm"},
		"htm lowercase":  {mutate: func(p *proofSpec) { p.Claims["htm"] = "get" }, want: "htm"},
		"htm missing":    {mutate: func(p *proofSpec) { delete(p.Claims, "htm") }, want: "htm"},
		"htu other path": {mutate: func(p *proofSpec) { p.Claims["htu"] = "http://example.com/private/y" }, want: "htu"},
		"htu other host": {mutate: func(p *proofSpec) { p.Claims["htu"] = "http://evil.example/private/x" }, want: "htu"},
		"htu https":      {mutate: func(p *proofSpec) { p.Claims["htu"] = "https://example.com/private/x" }, want: "htu"},
		"htu other port": {mutate: func(p *proofSpec) { p.Claims["htu"] = "http://example.com:8080/private/x" }, want: "htu"},
		"htu relative":   {mutate: func(p *proofSpec) { p.Claims["htu"] = "/private/x" }, want: "htu"},
		"htu missing":    {mutate: func(p *proofSpec) { delete(p.Claims, "htu") }, want: "htu"},
		"htu ftp":        {mutate: func(p *proofSpec) { p.Claims["htu"] = "ftp://example.com/private/x" }, want: "htu"},
		"htu a user":     {mutate: func(p *proofSpec) { p.Claims["htu"] = "http://u@example.com/private/x" }, want: "htu"},
		"iat stale":      {mutate: func(p *proofSpec) { p.Claims["iat"] = time.Now().Add(-61 * time.Second).Unix() }, want: "iat"},
		"iat future":     {mutate: func(p *proofSpec) { p.Claims["iat"] = time.Now().Add(61 * time.Second).Unix() }, want: "iat"},
		"iat missing":    {mutate: func(p *proofSpec) { delete(p.Claims, "iat") }, want: "no iat"},
		"iat a string":   {mutate: func(p *proofSpec) { p.Claims["iat"] = "now" }, want: "malformed"},
		"jti missing":    {mutate: func(p *proofSpec) { delete(p.Claims, "jti") }, want: "jti"},
		"jti too long":   {mutate: func(p *proofSpec) { p.Claims["jti"] = strings.Repeat("j", maxProofJTI+1) }, want: "jti"},
		"ath missing":    {mutate: func(p *proofSpec) { delete(p.Claims, "ath") }, want: "ath"},
		"ath other":      {mutate: func(p *proofSpec) { p.Claims["ath"] = accessTokenHash("another.access.token") }, want: "ath"},
		"not a JWT":      {raw: "not-a-jwt", want: "malformed"},
		"oversized":      {raw: strings.Repeat("a", maxProofSize+1), want: "larger than"},
		"two headers":    {req: func(r *http.Request) { r.Header.Add("DPoP", r.Header.Get("DPoP")) }, want: "2 DPoP headers"},
		"tampered claims": {mutate: func(p *proofSpec) {}, req: func(r *http.Request) {
			parts := strings.Split(r.Header.Get("DPoP"), ".")
			parts[1] = b64url.EncodeToString([]byte(`{"jti":"x","htm":"GET","htu":"http://example.com/private/x","iat":` + fmt.Sprint(time.Now().Unix()) + `,"ath":"` + accessTokenHash(token) + `"}`))
			r.Header.Set("DPoP", strings.Join(parts, "."))
		}, want: "signature is invalid"},
		"forwarded host untrusted": {mutate: func(p *proofSpec) { p.Claims["htu"] = "https://public.example/private/x" }, req: func(r *http.Request) {
			r.Header.Set("X-Forwarded-Host", "public.example")
			r.Header.Set("X-Forwarded-Proto", "https")
		}, want: "htu"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := tc.client
			if c == nil {
				c = es
			}
			raw := tc.raw
			if raw == "" {
				raw = c.Proof(t, "GET", url, token, tc.mutate)
			}
			r := proofRequest("GET", url, raw)
			if tc.req != nil {
				tc.req(r)
			}
			replay := &claimsOnce{}
			_, err := testVerifier(replay).verifyProof(r, token)
			if !errors.Is(err, errBadProof) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal mentioning %q", err, tc.want)
			}
			if len(replay.seen) != 0 {
				t.Fatalf("a refused proof was recorded: %v", replay.seen)
			}
		})
	}
}

func mustECKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestDPoPProofReplay: a proof is accepted once; the same jti again is
// refused, and the entry lives as long as the proof would be accepted.
func TestDPoPProofReplay(t *testing.T) {
	c := newDPoPClient(t, "ES256")
	replay := &claimsOnce{}
	v := testVerifier(replay)
	proof := c.Proof(t, "GET", "http://example.com/x", "")
	if _, err := v.verifyProof(proofRequest("GET", "http://example.com/x", proof), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := v.verifyProof(proofRequest("GET", "http://example.com/x", proof), ""); !errors.Is(err, errBadProof) || !strings.Contains(err.Error(), "used before") {
		t.Fatalf("replayed proof: %v", err)
	}
	for key, ttl := range replay.seen {
		if !strings.HasPrefix(key, "dpop:jti:") || ttl <= 0 || ttl > defaultDPoPWindow+time.Second {
			t.Fatalf("replay entry %q for %s", key, ttl)
		}
	}
	// a proof made 50s in the future stays recorded until its iat leaves the window
	replay = &claimsOnce{}
	future := c.Proof(t, "GET", "http://example.com/x", "", func(p *proofSpec) { p.Claims["iat"] = time.Now().Add(50 * time.Second).Unix() })
	if _, err := testVerifier(replay).verifyProof(proofRequest("GET", "http://example.com/x", future), ""); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range replay.seen {
		if ttl < 100*time.Second {
			t.Fatalf("a proof accepted for about 110s more is remembered for %s", ttl)
		}
	}
}

// TestDPoPProofNone: no DPoP header is errNoProof, not a refusal: the
// caller decides (optional mode lets it be).
func TestDPoPProofNone(t *testing.T) {
	_, err := testVerifier(&claimsOnce{}).verifyProof(proofRequest("GET", "http://example.com/x", ""), "")
	if !errors.Is(err, errNoProof) || errors.Is(err, errBadProof) {
		t.Fatalf("got %v", err)
	}
}

// TestDPoPProofStoreDown: a replay cache that cannot be reached is a
// store failure (answered 503), never a refused proof (401).
func TestDPoPProofStoreDown(t *testing.T) {
	c := newDPoPClient(t, "ES256")
	replay := &claimsOnce{err: fmt.Errorf("%w: connection refused", ErrStoreUnavailable)}
	_, err := testVerifier(replay).verifyProof(proofRequest("GET", "http://example.com/x", c.Proof(t, "GET", "http://example.com/x", "")), "")
	if !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, errBadProof) {
		t.Fatalf("got %v", err)
	}
}

// TestDPoPHTU: the URL a proof names is compared as RFC 9449 §4.3 says
// (query and fragment ignored, case and default ports normalized), with
// the scheme and host the client used: X-Forwarded-Proto and -Host count
// only from a trusted proxy, and the path is the one before any rewrite.
func TestDPoPHTU(t *testing.T) {
	c := newDPoPClient(t, "EdDSA")
	cases := map[string]struct {
		url, htu string
		req      func(*http.Request) *http.Request
	}{
		"query and fragment": {url: "http://example.com/x?a=1", htu: "http://example.com/x?b=2#frag"},
		"case":               {url: "http://example.com/x", htu: "HTTP://EXAMPLE.com/x"},
		"default port":       {url: "http://example.com/x", htu: "http://example.com:80/x"},
		"empty path":         {url: "http://example.com/", htu: "http://example.com"},
		"percent-encoding":   {url: "http://example.com/a%20b", htu: "http://example.com/a%20b"},
		"https default port": {url: "https://example.com/x", htu: "https://example.com:443/x"},
		"trusted proxy": {url: "http://10.0.0.1:8080/x", htu: "https://public.example/x", req: func(r *http.Request) *http.Request {
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "public.example")
			caddyhttp.SetVar(r.Context(), caddyhttp.TrustedProxyVarKey, true)
			return r
		}},
		"rewritten path": {url: "http://example.com/api/x", htu: "http://example.com/api/x", req: func(r *http.Request) *http.Request {
			r.URL.Path = "/x" // as `uri strip_prefix /api` leaves it
			return r
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := proofRequest("GET", tc.url, c.Proof(t, "GET", tc.htu, ""))
			if tc.req != nil {
				r = tc.req(r)
			}
			if _, err := testVerifier(&claimsOnce{}).verifyProof(r, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDPoPConfig: modes and the window are checked; defaults are optional
// and 60s.
func TestDPoPConfig(t *testing.T) {
	def := (*DPoPConfig)(nil).resolved()
	if def.Mode != dpopOptional || time.Duration(def.IATWindow) != time.Minute || def.validate() != nil {
		t.Fatalf("defaults: %+v", def)
	}
	if err := (DPoPConfig{Mode: "sometimes", IATWindow: 1}).validate(); err == nil {
		t.Fatal("unknown mode accepted")
	}
	if err := (DPoPConfig{Mode: dpopOff, IATWindow: -1}).validate(); err == nil {
		t.Fatal("negative window accepted")
	}
}

func mustRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// anySignature is a signing method that signs nothing: for proofs refused
// before their signature is checked (golang-jwt would not sign them).
type anySignature struct{ alg string }

func (a anySignature) Alg() string                    { return a.alg }
func (anySignature) Sign(string, any) ([]byte, error) { return make([]byte, 64), nil }
func (anySignature) Verify(string, []byte, any) error { return errors.New("never verifies") }
