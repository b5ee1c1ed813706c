package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// DPoPClient is a test client's DPoP key (RFC 9449): it signs proofs as
// §4.2 describes, and each mutation of Proof bends one rule. The unit
// tests and the end-to-end tests share it.
type DPoPClient struct {
	Signer crypto.Signer
	Method jwt.SigningMethod
}

// NewDPoPClient makes a key for alg: ES256, EdDSA, Ed25519 or RS256 (2048).
func NewDPoPClient(t testing.TB, alg string) *DPoPClient {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch alg {
	case "ES256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA", "Ed25519":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case "RS256":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil {
		t.Fatalf("golang-jwt knows no %s", alg)
	}
	return &DPoPClient{Signer: signer, Method: method}
}

// JWK is the client's public key as a JWK header member.
func (c *DPoPClient) JWK(t testing.TB) map[string]any {
	t.Helper()
	return JWKMembers(t, c.Signer.Public())
}

// JWKMembers is key (public or private) as JWK members, by go-jose.
func JWKMembers(t testing.TB, key any) map[string]any {
	t.Helper()
	data, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Thumbprint is the client key's RFC 7638 thumbprint, by go-jose.
func (c *DPoPClient) Thumbprint(t testing.TB) string {
	t.Helper()
	k := jose.JSONWebKey{Key: c.Signer.Public()}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

// ProofSpec is a proof's content, before signing; mutations bend it.
type ProofSpec struct {
	Header jwt.MapClaims
	Claims jwt.MapClaims
	// Method and Key sign it (default: the client's)
	Method jwt.SigningMethod
	Key    any
}

// Proof signs a proof for method and url; accessToken, when set, is
// hashed into ath. Each mutation (nil ones are skipped) bends the proof
// before it is signed.
func (c *DPoPClient) Proof(t testing.TB, method, url, accessToken string, mutate ...func(*ProofSpec)) string {
	t.Helper()
	spec := &ProofSpec{
		Header: jwt.MapClaims{"typ": "dpop+jwt", "jwk": c.JWK(t)},
		Claims: jwt.MapClaims{"jti": randomJTI(), "htm": method, "htu": url, "iat": time.Now().Unix()},
		Method: c.Method,
		Key:    c.Signer,
	}
	if accessToken != "" {
		spec.Claims["ath"] = TokenHash(accessToken)
	}
	for _, m := range mutate {
		if m != nil {
			m(spec)
		}
	}
	tok := jwt.NewWithClaims(spec.Method, spec.Claims)
	for k, v := range spec.Header {
		tok.Header[k] = v
	}
	tok.Header["alg"] = spec.Method.Alg()
	s, err := tok.SignedString(spec.Key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SetClaim is a mutation setting one claim.
func SetClaim(name string, value any) func(*ProofSpec) {
	return func(s *ProofSpec) { s.Claims[name] = value }
}

// SignWith is a mutation signing with another method and key.
func SignWith(m jwt.SigningMethod, key any) func(*ProofSpec) {
	return func(s *ProofSpec) { s.Method, s.Key = m, key }
}

// TokenHash is a proof's ath for token: base64url(SHA-256(token)).
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
