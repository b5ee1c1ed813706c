package tokenauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// forgedClaims are claims that would be accepted if the signature were.
func forgedClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": "test-issuer", "aud": "test-aud", "sub": "mallory", "sid": "sid-x",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j",
	}
}

// forge signs forgedClaims with method and key under the given headers.
func forge(t testing.TB, method jwt.SigningMethod, key any, headers map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, forgedClaims())
	tok.Header["typ"] = typAccess
	for k, v := range headers {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeysAlgorithmConfusion: with asymmetric keys, tokens that use the
// public key (as PEM or as JWK) as an HMAC secret, that name another alg
// than their kid's key, that name no or an unknown kid, or alg none, are
// all refused.
func TestKeysAlgorithmConfusion(t *testing.T) {
	ed, ec, rk := testKeys(t)
	for alg, priv := range map[string]any{"ed25519": ed, "es256": ec, "rs256": rk} {
		t.Run(alg, func(t *testing.T) {
			ts := testService(t, KeyConfig{Algorithm: alg, Key: pkcs8PEM(t, priv)})
			ours := ts.keys.signer
			// control: our own forged-claims token with our key is accepted,
			// so every refusal below is due to the attack, not the claims.
			if _, err := ts.verifyAccess(forge(t, ours.method, ours.sign, map[string]any{"kid": ours.kid})); err != nil {
				t.Fatalf("control token refused: %v", err)
			}
			pubPEM := []byte(pkixPEM(t, ours.verify))
			jwksDoc := ts.keys.jwks
			var set struct{ Keys []json.RawMessage }
			if err := json.Unmarshal(jwksDoc, &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("jwks %s: %v", jwksDoc, err)
			}
			jwkJSON := []byte(set.Keys[0])
			attackerEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			_, attackerEd, _ := ed25519.GenerateKey(rand.Reader)

			attacks := map[string]string{
				"hs256 with public PEM as secret": forge(t, jwt.SigningMethodHS256, pubPEM, map[string]any{"kid": ours.kid}),
				"hs256 with JWK JSON as secret":   forge(t, jwt.SigningMethodHS256, jwkJSON, map[string]any{"kid": ours.kid}),
				"hs256 with JWKS as secret":       forge(t, jwt.SigningMethodHS256, jwksDoc, map[string]any{"kid": ours.kid}),
				"hs256 public PEM, no kid":        forge(t, jwt.SigningMethodHS256, pubPEM, nil),
				"hs384 with public PEM as secret": forge(t, jwt.SigningMethodHS384, pubPEM, map[string]any{"kid": ours.kid}),
				"unknown kid":                     forge(t, ours.method, ours.sign, map[string]any{"kid": "someone-else"}),
				"no kid":                          forge(t, ours.method, ours.sign, nil),
				"kid of wrong type":               forge(t, ours.method, ours.sign, map[string]any{"kid": 7}),
				"other asymmetric alg on our kid": forge(t, jwt.SigningMethodES384, mustP384(t), map[string]any{"kid": ours.kid}),
				"attacker es256 key on our kid":   forge(t, jwt.SigningMethodES256, attackerEC, map[string]any{"kid": ours.kid}),
				"attacker ed25519 key on our kid": forge(t, jwt.SigningMethodEdDSA, attackerEd, map[string]any{"kid": ours.kid}),
				"alg none":                        forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"kid": ours.kid}),
			}
			if alg != "rs256" {
				// our kid, a valid RS256 signature by some other key
				attacks["rs256 on a non-RSA kid"] = forge(t, jwt.SigningMethodRS256, rk, map[string]any{"kid": ours.kid})
			} else {
				attacks["ps256 on the RSA kid (same key type)"] = forge(t, jwt.SigningMethodPS256, rk, map[string]any{"kid": ours.kid})
				attacks["rs512 on the RSA kid (same key)"] = forge(t, jwt.SigningMethodRS512, rk, map[string]any{"kid": ours.kid})
			}
			for name, tok := range attacks {
				if _, err := ts.verifyAccess(tok); err == nil {
					t.Errorf("%s: accepted", name)
				}
			}
		})
	}
}

// TestKeysAlgorithmConfusionHMACRing: with an hs256 signing key and an
// asymmetric verify key, a token signed with the HMAC secret but naming
// the asymmetric kid is refused, and the other way round.
func TestKeysAlgorithmConfusionHMACRing(t *testing.T) {
	ed, _, _ := testKeys(t)
	edKey, err := loadKey(KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}, true)
	if err != nil {
		t.Fatal(err)
	}
	ts := testService(t, KeyConfig{Algorithm: "hs256", Key: testSecret},
		KeyConfig{KID: edKey.kid, Algorithm: "ed25519", Key: pkixPEM(t, ed.Public())})
	hmacKID := ts.keys.signer.kid
	for name, tok := range map[string]string{
		"secret on ed25519 kid":  forge(t, jwt.SigningMethodHS256, []byte(testSecret), map[string]any{"kid": edKey.kid}),
		"ed25519 on hmac kid":    forge(t, jwt.SigningMethodEdDSA, ed, map[string]any{"kid": hmacKID}),
		"public PEM on hmac kid": forge(t, jwt.SigningMethodHS256, []byte(pkixPEM(t, ed.Public())), map[string]any{"kid": hmacKID}),
	} {
		if _, err := ts.verifyAccess(tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// controls
	if _, err := ts.verifyAccess(forge(t, jwt.SigningMethodHS256, []byte(testSecret), map[string]any{"kid": hmacKID})); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.verifyAccess(forge(t, jwt.SigningMethodEdDSA, ed, map[string]any{"kid": edKey.kid})); err != nil {
		t.Fatal(err)
	}
}

func mustP384(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeysEmbeddedKeyHeadersIgnored: tokens signed by an attacker's key
// that carry that key in jwk, x5c, or point to it with jku or x5u, are
// refused, and the URLs are never fetched.
func TestKeysEmbeddedKeyHeadersIgnored(t *testing.T) {
	ed, _, _ := testKeys(t)
	ts := testService(t, KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)})
	ourKID := ts.keys.signer.kid

	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := newPublicJWK(&attacker.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	attackerKID := jwk.thumbprint()
	jwkEntryOf := jwkEntry{publicJWK: *jwk, Kid: attackerKID, Use: "sig", Alg: "ES256"}
	setDoc, _ := json.Marshal(map[string]any{"keys": []any{jwkEntryOf}})

	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &attacker.PublicKey, attacker)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pemOf(t, "CERTIFICATE", certDER)

	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		if r.URL.Path == "/cert.pem" {
			_, _ = w.Write([]byte(certPEM))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(setDoc)
	}))
	defer srv.Close()

	for _, kid := range []string{ourKID, attackerKID} {
		for name, headers := range map[string]map[string]any{
			"jwk": {"jwk": jwkEntryOf},
			"jku": {"jku": srv.URL + "/jwks.json"},
			"x5u": {"x5u": srv.URL + "/cert.pem"},
			"x5c": {"x5c": []string{base64.StdEncoding.EncodeToString(certDER)}},
			"all": {"jwk": jwkEntryOf, "jku": srv.URL + "/jwks.json", "x5u": srv.URL + "/cert.pem", "x5c": []string{base64.StdEncoding.EncodeToString(certDER)}},
		} {
			headers["kid"] = kid
			tok := forge(t, jwt.SigningMethodES256, attacker, headers)
			if _, err := ts.verifyAccess(tok); err == nil {
				t.Errorf("%s header with kid %s: accepted", name, kid)
			}
		}
	}
	if n := fetched.Load(); n != 0 {
		t.Fatalf("a key URL from a token header was fetched %d times", n)
	}
	// the headers do not get in the way of a genuine token
	genuine := forge(t, jwt.SigningMethodEdDSA, ed, map[string]any{"kid": ourKID, "jku": srv.URL + "/jwks.json", "jwk": jwkEntryOf})
	if _, err := ts.verifyAccess(genuine); err != nil {
		t.Fatalf("genuine token with extra headers refused: %v", err)
	}
}
