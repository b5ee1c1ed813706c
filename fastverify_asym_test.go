package tokenauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestFastPathAsymmetric: for EdDSA, ES256 and RS256 access tokens the fast
// path accepts the plugin's own tokens with the claims the golang-jwt path
// decodes, and steps aside (the parser then refuses) on a damaged
// signature, a header naming another algorithm for the kid, a token signed
// by another key under the same kid, and an HS256 token keyed with the
// public key (algorithm confusion).
func TestFastPathAsymmetric(t *testing.T) {
	ed, ec, rs := testKeys(t)
	others := map[string]any{}
	{
		ed2, ec2, rs2 := freshKeys(t)
		others["ed25519"], others["es256"], others["rs256"] = ed2, ec2, rs2
	}
	for _, c := range []struct {
		alg, jwtAlg string
		key         any
	}{
		{"ed25519", "EdDSA", ed}, {"es256", "ES256", ec}, {"rs256", "RS256", rs},
	} {
		t.Run(c.jwtAlg, func(t *testing.T) {
			ts := testService(t, KeyConfig{Algorithm: c.alg, Key: pkcs8PEM(t, c.key)})
			tok, _, err := ts.issueAccess(testUser, "s1", time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			fast, ok := ts.fastVerifyAccess(tok)
			if !ok {
				t.Fatal("the fast path stepped aside on the plugin's own token")
			}
			full, err := ts.verifyAccess(tok)
			if err != nil {
				t.Fatal(err)
			}
			fast.vars, full.vars = nil, nil
			if !reflect.DeepEqual(fast, full) {
				t.Fatalf("fast path claims %+v, parser %+v", fast, full)
			}

			parts := strings.Split(tok, ".")
			enc := base64.RawURLEncoding
			hdr, _ := enc.DecodeString(parts[0])
			otherAlg := "ES256"
			if c.jwtAlg == "ES256" {
				otherAlg = "EdDSA"
			}
			// a token of the same kid, signed by another key of the same algorithm
			impostor := testService(t, KeyConfig{Algorithm: c.alg, Key: pkcs8PEM(t, others[c.alg])})
			impostor.keys.signer.kid = ts.keys.signer.kid
			impostor.keys.byKID = map[string]*jwtKey{ts.keys.signer.kid: impostor.keys.signer}
			forged, _, err := impostor.issueAccess(testUser, "s1", time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := enc.DecodeString(parts[2])
			sig[len(sig)/2] ^= 1
			pubPEM := pkixPEM(t, ts.keys.signer.verify)
			for name, bad := range map[string]string{
				"damaged signature":   parts[0] + "." + parts[1] + "." + enc.EncodeToString(sig),
				"truncated signature": parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4],
				"another alg for the kid": enc.EncodeToString([]byte(strings.Replace(string(hdr), `"`+c.jwtAlg+`"`, `"`+otherAlg+`"`, 1))) +
					"." + parts[1] + "." + parts[2],
				"another key, same kid": forged,
				"HS256 keyed with the public key": signRawWith(pubPEM,
					strings.Replace(string(hdr), `"`+c.jwtAlg+`"`, `"HS256"`, 1), mustDecode(t, parts[1])),
			} {
				if _, ok := ts.fastVerifyAccess(bad); ok {
					t.Errorf("%s: accepted by the fast path", name)
				}
				if _, err := ts.verifyAccess(bad); err == nil {
					t.Errorf("%s: accepted by the parser", name)
				}
			}

			// on a cache miss the guard takes the fast path: without a
			// parser it still accepts
			ts.parser = nil
			ts.cache = newTokenCache(10)
			if got, err := ts.verifyAccessCached(tok); err != nil || got.SID != "s1" {
				t.Fatalf("verifyAccessCached did not use the fast path: %v", err)
			}
		})
	}
}

// freshKeys are keys other than testKeys'.
func freshKeys(t *testing.T) (ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return ed, ec, rs
}

// signRawWith signs header and claims JSON as HS256 with secret.
func signRawWith(secret, header, claims string) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

func mustDecode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
