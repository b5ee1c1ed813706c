package tokenauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
)

// jwksMaxAge is how long clients may cache the JWK Set, in seconds. Short
// enough that a key added for rotation is seen within minutes.
const jwksMaxAge = 300

// publicJWK is a public key as an RFC 7517 JWK, with only the members
// that define the key (those RFC 7638 hashes).
type publicJWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// newPublicJWK turns an Ed25519, P-256 ECDSA or RSA public key into a JWK.
func newPublicJWK(pub crypto.PublicKey) (*publicJWK, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return &publicJWK{Kty: "OKP", Crv: "Ed25519", X: b64(k)}, nil
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
		}
		point, err := k.Bytes() // 0x04 || X || Y, each 32 bytes
		if err != nil {
			return nil, err
		}
		return &publicJWK{Kty: "EC", Crv: "P-256", X: b64(point[1:33]), Y: b64(point[33:65])}, nil
	case *rsa.PublicKey:
		return &publicJWK{Kty: "RSA", N: b64(k.N.Bytes()), E: b64(big.NewInt(int64(k.E)).Bytes())}, nil
	default:
		return nil, fmt.Errorf("unsupported public key %T", pub)
	}
}

// thumbprint is the RFC 7638 JWK thumbprint: SHA-256 over the required
// members in lexicographic order, without whitespace, base64url.
func (j *publicJWK) thumbprint() string {
	var canonical string
	switch j.Kty {
	case "OKP": // RFC 8037 §2: crv, kty, x
		canonical = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	case "EC":
		canonical = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	case "RSA":
		canonical = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

// jwkEntry is one key of the published set.
type jwkEntry struct {
	publicJWK
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// buildJWKS renders the JWK Set of the ring's public keys, signing key
// first. HMAC keys are secrets and never appear; an HMAC-only ring gives
// an empty set.
func buildJWKS(keys []*jwtKey) ([]byte, error) {
	set := struct {
		Keys []jwkEntry `json:"keys"`
	}{Keys: []jwkEntry{}}
	for _, k := range keys {
		if k.jwk == nil {
			continue
		}
		set.Keys = append(set.Keys, jwkEntry{publicJWK: *k.jwk, Kid: k.kid, Use: "sig", Alg: k.method.Alg()})
	}
	return json.Marshal(set)
}

// serveJWKS answers GET {endpoint}/jwks.json with the realm's public keys.
func (ta *TokenAuth) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", jwksMaxAge))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(ta.tokens.keys.jwks)
	return err
}
