package tokenauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

// KeyConfig names a key that signs or verifies tokens.
type KeyConfig struct {
	// Algorithm of the key: `hs256` (a shared secret).
	Algorithm string `json:"algorithm"`

	// For `hs256`, the secret itself, at least 32 bytes; use a placeholder
	// such as `{env.TOKEN_AUTH_SECRET}` rather than writing it in the config.
	Key string `json:"key"`

	// The key id (`kid`) of a verify-only key, as found in the headers of
	// the tokens it signed. Ignored for the signing key, whose id is derived.
	KID string `json:"kid,omitempty"`
}

// minHMACSecret is the shortest HS256 secret accepted: the hash's size.
const minHMACSecret = 32

// jwtKey is one key of a realm, with the only algorithm it may be used with.
type jwtKey struct {
	kid    string
	method jwt.SigningMethod
	sign   any // nil for verify-only keys
	verify any
}

// keyRing holds the key that signs new tokens and every key that verifies,
// by kid. Verification looks the key up by kid and accepts only that key's
// algorithm, which rules out algorithm confusion.
type keyRing struct {
	signer *jwtKey
	byKID  map[string]*jwtKey
}

func newKeyRing(signing KeyConfig, verify []KeyConfig) (*keyRing, error) {
	ring := &keyRing{byKID: make(map[string]*jwtKey)}
	signer, err := loadKey(signing, true)
	if err != nil {
		return nil, fmt.Errorf("signing_key: %w", err)
	}
	ring.signer = signer
	ring.byKID[signer.kid] = signer
	for _, vc := range verify {
		k, err := loadKey(vc, false)
		if err != nil {
			return nil, fmt.Errorf("verify_key %s: %w", vc.KID, err)
		}
		if _, dup := ring.byKID[k.kid]; dup {
			return nil, fmt.Errorf("verify_key %s: kid already used", k.kid)
		}
		ring.byKID[k.kid] = k
	}
	return ring, nil
}

// loadKey turns a key config into a key; placeholders in the key are replaced.
func loadKey(kc KeyConfig, forSigning bool) (*jwtKey, error) {
	material := caddy.NewReplacer().ReplaceKnown(kc.Key, "")
	var k *jwtKey
	switch strings.ToLower(kc.Algorithm) {
	case "hs256":
		if len(material) < minHMACSecret {
			return nil, fmt.Errorf("hs256 secret is %d bytes; at least %d are required", len(material), minHMACSecret)
		}
		secret := []byte(material)
		k = &jwtKey{kid: hmacKID(secret), method: jwt.SigningMethodHS256, sign: secret, verify: secret}
	case "":
		return nil, errors.New("algorithm is required")
	default:
		return nil, fmt.Errorf("unsupported algorithm %q (want hs256)", kc.Algorithm)
	}
	if !forSigning {
		k.sign = nil
		if kc.KID != "" {
			k.kid = kc.KID
		}
	}
	return k, nil
}

// hmacKID derives a stable key id from a secret without revealing it: an
// HMAC of a fixed label under the secret, truncated.
func hmacKID(secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("caddy-token-auth key id"))
	return "hs256-" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:12])
}
