package tokenauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

// KeyConfig names a key that signs or verifies tokens.
type KeyConfig struct {
	// Algorithm of the key: `hs256` (a shared secret), `ed25519` (JWT alg
	// EdDSA), `es256` (ECDSA on P-256) or `rs256` (RSA, 2048 bits or more).
	Algorithm string `json:"algorithm"`

	// For `hs256`, the secret itself, at least 32 bytes; use a placeholder
	// such as `{env.TOKEN_AUTH_SECRET}` rather than writing it in the config.
	// For `ed25519`, `es256` and `rs256`, the path of a PEM file (or the PEM
	// text itself, e.g. from `{env.TOKEN_AUTH_KEY}`). A signing key must be
	// a private key: PKCS#8 (`PRIVATE KEY`), SEC 1 (`EC PRIVATE KEY`) or
	// PKCS#1 (`RSA PRIVATE KEY`). A verify key may also be a public key
	// (`PUBLIC KEY`, `RSA PUBLIC KEY`) or a `CERTIFICATE`. Encrypted PEM is
	// not supported. The file is read again on every config reload.
	Key string `json:"key"`

	// The key id (`kid`) of a verify-only key, as found in the headers of
	// the tokens it signed (and in the JWK Set). `auto` (or empty) means the
	// id this plugin gives the key when it signs with it: the RFC 7638
	// thumbprint (for hs256, an id derived from the secret), which is what
	// a former signing key needs. Another value is accepted (tokens of
	// another issuer) but logged as a warning at startup. Ignored for the
	// signing key, whose id is always derived.
	KID string `json:"kid,omitempty"`
}

// autoKID as a verify key's kid stands for the key's derived id.
const autoKID = "auto"

// minHMACSecret is the shortest HS256 secret accepted: the hash's size.
const minHMACSecret = 32

// minRSABits is the smallest RSA modulus accepted, to sign or to verify.
const minRSABits = 2048

// jwtKey is one key of a realm, with the only algorithm it may be used with.
type jwtKey struct {
	kid    string
	method jwt.SigningMethod
	sign   any // nil for verify-only keys
	verify any
	// derivedKID is the id this plugin gives the key when it signs with it:
	// the RFC 7638 thumbprint, or the HMAC-derived id.
	derivedKID string
	// jwk is the public key as a JWK (without kid); nil for HMAC keys,
	// which are never published.
	jwk *publicJWK
	// mac holds HMAC states under an HS256 secret (keycache.go); release
	// gives back the key's reference to the shared caches.
	mac     *sync.Pool
	release func()
}

// keyRing holds the key that signs new tokens and every key that verifies,
// by kid. Verification looks the key up by kid and accepts only that key's
// algorithm, which rules out algorithm confusion.
type keyRing struct {
	signer *jwtKey
	byKID  map[string]*jwtKey
	// ordered is the signing key, then the verify keys as configured.
	ordered []*jwtKey
	// jwks is the JWK Set document of the public keys, ready to serve.
	jwks []byte
	// headers are the encoded header segments this plugin writes with each
	// key, for access and refresh tokens (fastverify.go): a token whose
	// header segment is one of them needs no header decoding.
	headers []knownHeader
}

func newKeyRing(signing KeyConfig, verify []KeyConfig) (*keyRing, error) {
	signer, err := loadKey(signing, true)
	if err != nil {
		return nil, fmt.Errorf("signing_key: %w", err)
	}
	return newKeyRingFrom(signer, verify)
}

// newKeyRingFrom builds a ring around an already loaded signing key. The
// ring owns the keys: on error, their cache references are given back.
func newKeyRingFrom(signer *jwtKey, verify []KeyConfig) (_ *keyRing, err error) {
	ring := &keyRing{byKID: make(map[string]*jwtKey)}
	ring.signer = signer
	ring.byKID[signer.kid] = signer
	ring.ordered = append(ring.ordered, signer)
	defer func() {
		if err != nil {
			ring.release()
		}
	}()
	for _, vc := range verify {
		k, err := loadKey(vc, false)
		if err != nil {
			return nil, fmt.Errorf("verify_key %s: %w", vc.KID, err)
		}
		ring.ordered = append(ring.ordered, k)
		if _, dup := ring.byKID[k.kid]; dup {
			return nil, fmt.Errorf("verify_key %s: kid already used", k.kid)
		}
		ring.byKID[k.kid] = k
	}
	if ring.jwks, err = buildJWKS(ring.ordered); err != nil {
		return nil, err
	}
	ring.headers = knownHeaders(ring.ordered)
	return ring, nil
}

// loadKey turns a key config into a key; placeholders in the key are replaced.
func loadKey(kc KeyConfig, forSigning bool) (*jwtKey, error) {
	alg := strings.ToLower(kc.Algorithm)
	material, err := resolvePlaceholders(alg+" key", kc.Key)
	if err != nil {
		return nil, err
	}
	var k *jwtKey
	switch alg {
	case "hs256":
		if len(material) < minHMACSecret {
			from := ""
			if material != kc.Key {
				from = " (from " + kc.Key + ")"
			}
			return nil, fmt.Errorf("hs256 secret%s is %d bytes; at least %d are required", from, len(material), minHMACSecret)
		}
		secret := []byte(material)
		k = &jwtKey{kid: hmacKID(secret), method: jwt.SigningMethodHS256, sign: secret, verify: secret}
		k.mac, k.release = acquireHMACStates(secret) // keycache.go
	case "ed25519", "es256", "rs256":
		pemData, err := readPEMMaterial(material)
		if err != nil {
			return nil, err
		}
		k, err = asymmetricKeyFromPEM(alg, pemData, forSigning)
		if err != nil {
			return nil, err
		}
	case "":
		return nil, errors.New("algorithm is required")
	default:
		return nil, fmt.Errorf("unsupported algorithm %q (want hs256, ed25519, es256 or rs256)", kc.Algorithm)
	}
	k.derivedKID = k.kid
	if !forSigning {
		k.sign = nil
		if kc.KID != "" && kc.KID != autoKID {
			k.kid = kc.KID
		}
	}
	return k, nil
}

// resolvePlaceholders replaces the placeholders of a config value (such as
// {env.SECRET} or {file./run/secret}). A value written as placeholders
// that all resolve to nothing is an error naming them: an unset
// environment variable would otherwise surface as "0 bytes" or "a file is
// required", far from its cause.
func resolvePlaceholders(what, raw string) (string, error) {
	resolved := caddy.NewReplacer().ReplaceKnown(raw, "")
	if resolved == "" && raw != "" {
		return "", fmt.Errorf("the %s %s is empty or unset: its placeholder resolved to nothing (is the environment variable or file there for the Caddy process?)", what, raw)
	}
	return resolved, nil
}

// readPEMMaterial returns PEM text given either inline or as a file path.
func readPEMMaterial(material string) ([]byte, error) {
	if material == "" {
		return nil, errors.New("a PEM file is required")
	}
	if strings.Contains(material, "-----BEGIN ") {
		return []byte(material), nil
	}
	data, err := os.ReadFile(material)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	return data, nil
}

// asymmetricKeyFromPEM parses a PEM key for alg and checks that it is the
// kind of key alg needs. A signing key must be private.
// The key holds a reference to the parsed-key cache (keycache.go).
func asymmetricKeyFromPEM(alg string, pemData []byte, forSigning bool) (*jwtKey, error) {
	k, release, err := acquireParsedKey(alg, pemData, func() (*jwtKey, error) {
		priv, pub, err := parsePEMKey(pemData)
		if err != nil {
			return nil, err
		}
		return newAsymmetricKey(alg, priv, pub)
	})
	if err != nil {
		return nil, err
	}
	if forSigning && k.sign == nil {
		release()
		return nil, errors.New("a signing key must be a private key; the PEM holds only a public key")
	}
	c := copyKey(k)
	c.release = release
	return c, nil
}

// newAsymmetricKey checks the key's type and size against alg and builds
// the key with its JWK and thumbprint kid. priv may be nil.
func newAsymmetricKey(alg string, priv crypto.Signer, pub crypto.PublicKey) (*jwtKey, error) {
	k := &jwtKey{verify: pub}
	if priv != nil {
		k.sign = priv
	}
	switch alg {
	case "ed25519":
		if _, ok := pub.(ed25519.PublicKey); !ok {
			return nil, fmt.Errorf("the PEM holds %s, not an Ed25519 key", keyKind(pub))
		}
		k.method = jwt.SigningMethodEdDSA
	case "es256":
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("the PEM holds %s, not an ECDSA P-256 key", keyKind(pub))
		}
		if ec.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("es256 needs a P-256 key; the PEM holds a %s key", ec.Curve.Params().Name)
		}
		k.method = jwt.SigningMethodES256
	case "rs256":
		r, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("the PEM holds %s, not an RSA key", keyKind(pub))
		}
		if r.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key is %d bits; at least %d are required", r.N.BitLen(), minRSABits)
		}
		k.method = jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	jwk, err := newPublicJWK(pub)
	if err != nil {
		return nil, err
	}
	k.jwk = jwk
	k.kid = jwk.thumbprint()
	return k, nil
}

// copyKey returns a shallow copy, so callers may set kid and drop the
// private half without touching a cached key.
func copyKey(k *jwtKey) *jwtKey {
	c := *k
	return &c
}

// hmacKID derives a stable key id from a secret without revealing it: an
// HMAC of a fixed label under the secret, truncated.
func hmacKID(secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("caddy-token-auth key id"))
	return "hs256-" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:12])
}
