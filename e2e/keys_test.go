package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// keysSite is a site whose /private* needs a token; the two verbs are the
// password hash of alice and the key lines of the test.
const keysSite = `
	token_auth /private* {
		user alice %s
		%s
	}
	respond /private* "hello {http.auth.user.id}"
	respond "public"
`

func keysSiteBody(t testing.TB, keyLines string) string {
	return fmt.Sprintf(keysSite, testenv.Hash(t, "wonderland"), keyLines)
}

func login(t testing.TB, p *caddyProc) (access, refresh string) {
	t.Helper()
	resp := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "wonderland"})
	if resp.Status != http.StatusCreated {
		t.Fatalf("login: %d %s\nlogs:\n%s", resp.Status, resp.Raw, p.Logs())
	}
	return resp.str("accessToken"), resp.str("refreshToken")
}

// guarded tells whether p lets the access token through to /private.
func guarded(t testing.TB, p *caddyProc, access string) int {
	t.Helper()
	resp := p.do("GET", "/private", nil, "Authorization", "Bearer "+access)
	if resp.Status == http.StatusOK && resp.Raw != "hello alice" {
		t.Fatalf("guarded answer %q", resp.Raw)
	}
	return resp.Status
}

// fetchJWKS gets the JWK Set and checks its headers.
func fetchJWKS(t testing.TB, p *caddyProc) (jose.JSONWebKeySet, string) {
	t.Helper()
	resp, err := http.Get(p.BaseURL + "/authentication/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("jwks.json: %d %v", resp.StatusCode, resp.Header)
	}
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("go-jose cannot read the JWK Set %s: %v", raw, err)
	}
	return set, string(raw)
}

// joseVerify checks an access token against a JWK Set with go-jose, an
// implementation independent of the one that signed it.
func joseVerify(t testing.TB, set jose.JSONWebKeySet, token string) error {
	t.Helper()
	parsed, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256})
	if err != nil {
		return err
	}
	var claims josejwt.Claims
	if err := parsed.Claims(set, &claims); err != nil {
		return err
	}
	return claims.Validate(josejwt.Expected{Issuer: "caddy-token-auth", AnyAudience: josejwt.Audience{"default"}, Subject: "alice", Time: time.Now()})
}

// TestKeysE2EGeneratedKeySurvivesRestart: with no signing_key, an Ed25519
// key is generated into Caddy's storage; tokens verify with go-jose against
// the JWK Set; after a restart the same key signs and old tokens still work.
func TestKeysE2EGeneratedKeySurvivesRestart(t *testing.T) {
	p := startCaddy(t, "", keysSiteBody(t, ""))
	access, refresh := login(t, p)
	h := headerOf(t, access)
	kid, _ := h["kid"].(string)
	if h["alg"] != "EdDSA" || kid == "" {
		t.Fatalf("header %v", h)
	}
	keyFile := filepath.Join(p.dir, "storage", "token_auth", "default", "signing_key.pem")
	pemData, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("generated key not in storage: %v", err)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	if !strings.Contains(string(pemData), "BEGIN PRIVATE KEY") || thumbprintKID(t, string(pemData)) != kid {
		t.Fatal("the stored key is not the one that signs")
	}
	set, raw := fetchJWKS(t, p)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != kid || set.Keys[0].Algorithm != "EdDSA" || !set.Keys[0].IsPublic() {
		t.Fatalf("JWKS %s", raw)
	}
	if err := joseVerify(t, set, access); err != nil {
		t.Fatalf("go-jose refuses our token: %v", err)
	}
	if tp, err := set.Keys[0].Thumbprint(crypto.SHA256); err != nil || base64.RawURLEncoding.EncodeToString(tp) != kid {
		t.Fatalf("kid %s is not the RFC 7638 thumbprint by go-jose (%v)", kid, err)
	}
	if got := guarded(t, p, access); got != http.StatusOK {
		t.Fatalf("guard: %d", got)
	}

	p.restart()
	if got := guarded(t, p, access); got != http.StatusOK {
		t.Fatalf("token from before the restart: %d\n%s", got, p.Logs())
	}
	resp := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": refresh})
	if resp.Status != http.StatusCreated {
		t.Fatalf("refresh after restart: %d %s", resp.Status, resp.Raw)
	}
	if headerOf(t, resp.str("accessToken"))["kid"] != kid {
		t.Fatal("another key signs after the restart")
	}
	again, err := os.ReadFile(keyFile)
	if err != nil || string(again) != string(pemData) {
		t.Fatal("the stored key changed across the restart")
	}
	if _, raw2 := fetchJWKS(t, p); raw2 != raw {
		t.Fatalf("JWKS changed across the restart: %s vs %s", raw, raw2)
	}
}

// startCaddyTogether starts one Caddy per dir at the same moment (both
// processes launched before either is waited for), each with the site body.
func startCaddyTogether(t *testing.T, body string, dirs ...string) []*caddyProc {
	t.Helper()
	bin := caddyBinary(t)
	procs := make([]*caddyProc, len(dirs))
	for i, dir := range dirs {
		p := &caddyProc{t: t, bin: bin, dir: dir, Port: testenv.FreePort(t)}
		p.BaseURL = fmt.Sprintf("http://127.0.0.1:%d", p.Port)
		p.adminURL = fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
		p.writeCaddyfile("", body)
		procs[i] = p
	}
	for _, p := range procs {
		p.launch()
		t.Cleanup(p.stop)
	}
	for _, p := range procs {
		p.waitReady()
	}
	return procs
}

// TestKeysE2ESharedStorage: two Caddy processes sharing one storage
// directory, started at the same moment against an empty storage, end up
// with one generated key, and each accepts the tokens of the other.
func TestKeysE2ESharedStorage(t *testing.T) {
	shared := t.TempDir()
	dirA, dirB := t.TempDir(), t.TempDir()
	// the harness configures `storage file_system <dir>/storage`
	for _, d := range []string{dirA, dirB} {
		if err := os.Symlink(shared, filepath.Join(d, "storage")); err != nil {
			t.Fatal(err)
		}
	}
	procs := startCaddyTogether(t, keysSiteBody(t, ""), dirA, dirB)
	a, b := procs[0], procs[1]

	keys, err := filepath.Glob(filepath.Join(shared, "token_auth", "*", "*.pem"))
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys in the shared storage: %v (%v)", keys, err)
	}
	generated := strings.Count(a.Logs(), "generated the realm's Ed25519 signing key") +
		strings.Count(b.Logs(), "generated the realm's Ed25519 signing key")
	if generated != 1 {
		t.Fatalf("%d processes generated a key, want 1", generated)
	}
	setA, rawA := fetchJWKS(t, a)
	_, rawB := fetchJWKS(t, b)
	if rawA != rawB || len(setA.Keys) != 1 {
		t.Fatalf("the processes publish different keys:\n%s\n%s", rawA, rawB)
	}
	fromA, _ := login(t, a)
	fromB, _ := login(t, b)
	for name, c := range map[string]struct {
		p     *caddyProc
		token string
	}{"A's token at B": {b, fromA}, "B's token at A": {a, fromB}} {
		if got := guarded(t, c.p, c.token); got != http.StatusOK {
			t.Fatalf("%s: %d", name, got)
		}
	}
	if err := joseVerify(t, setA, fromB); err != nil {
		t.Fatal(err)
	}
}

// TestKeysE2ERotation walks the README's rotation procedure: a new key
// signs, the old one stays as verify_key so nobody is logged out (access
// and refresh tokens), then the old one is dropped and its tokens stop
// working.
func TestKeysE2ERotation(t *testing.T) {
	ed, ec := testenv.NewKeys(t)
	dir := t.TempDir()
	for name, content := range map[string]string{"old.pem": pkcs8PEM(t, ed), "new.pem": sec1PEM(t, ec)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hash := testenv.Hash(t, "wonderland")
	site := func(keyLines string) string { return fmt.Sprintf(keysSite, hash, keyLines) }

	p := startCaddy(t, "", site("signing_key ed25519 {DIR}/old.pem"), caddyOptions{Dir: dir})
	oldAccess, oldRefresh := login(t, p)
	oldKID, _ := headerOf(t, oldAccess)["kid"].(string)
	if oldKID != thumbprintKID(t, pkcs8PEM(t, ed)) {
		t.Fatalf("kid %s is not the old key's thumbprint", oldKID)
	}
	set, _ := fetchJWKS(t, p)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != oldKID {
		t.Fatalf("JWKS before rotation: %+v", set.Keys)
	}

	// step: new signing key; the old signing_key line becomes a verify_key
	p.reload("", site("signing_key es256 {DIR}/new.pem\n\t\tverify_key auto ed25519 {DIR}/old.pem"))
	if got := guarded(t, p, oldAccess); got != http.StatusOK {
		t.Fatalf("old access token after rotation: %d\n%s", got, p.Logs())
	}
	newAccess, _ := login(t, p)
	h := headerOf(t, newAccess)
	newKID, _ := h["kid"].(string)
	if h["alg"] != "ES256" || newKID == oldKID || newKID != thumbprintKID(t, pkcs8PEM(t, ec)) {
		t.Fatalf("new token header %v", h)
	}
	resp := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": oldRefresh})
	if resp.Status != http.StatusCreated {
		t.Fatalf("refresh token of the old key: %d %s", resp.Status, resp.Raw)
	}
	if headerOf(t, resp.str("accessToken"))["kid"] != newKID || headerOf(t, resp.str("refreshToken"))["kid"] != newKID {
		t.Fatal("the refreshed pair is not signed with the new key")
	}
	set, raw := fetchJWKS(t, p)
	if len(set.Keys) != 2 || set.Keys[0].KeyID != newKID || set.Keys[1].KeyID != oldKID {
		t.Fatalf("JWKS during rotation: %s", raw)
	}
	for name, tok := range map[string]string{"old": oldAccess, "new": newAccess} {
		if err := joseVerify(t, set, tok); err != nil {
			t.Fatalf("go-jose refuses the %s token: %v", name, err)
		}
	}

	// step: once old tokens have expired, drop the old key
	p.reload("", site("signing_key es256 {DIR}/new.pem"))
	if got := guarded(t, p, oldAccess); got != http.StatusUnauthorized {
		t.Fatalf("token of a dropped key: %d", got)
	}
	if got := guarded(t, p, newAccess); got != http.StatusOK {
		t.Fatalf("new token after dropping the old key: %d", got)
	}
	if set, raw := fetchJWKS(t, p); len(set.Keys) != 1 || set.Keys[0].KeyID != newKID {
		t.Fatalf("JWKS after rotation: %s", raw)
	}
}

// headerOf returns a token's JOSE header.
func headerOf(t testing.TB, tok string) map[string]any {
	t.Helper()
	h, _ := testenv.JWTParts(t, tok)
	return h
}

// thumbprintKID is the key id the plugin gives a private key: its public
// key's RFC 7638 thumbprint, computed here by go-jose.
func thumbprintKID(t testing.TB, pemText string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		t.Fatal("no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key.(crypto.Signer).Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

func pkcs8PEM(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// sec1PEM is what `openssl ecparam -genkey -noout` writes.
func sec1PEM(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}
