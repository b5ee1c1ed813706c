package tokenauth

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysSignVerifyEachAlgorithm signs and verifies with every algorithm
// and every PEM form, from a file and inline.
func TestKeysSignVerifyEachAlgorithm(t *testing.T) {
	ed, ec, rk := testKeys(t)
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	// what `openssl ecparam -genkey` writes: parameters, then the key
	ecParams := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	cases := []struct {
		name, alg, key, wantAlg string
		file                    bool
	}{
		{"hs256", "hs256", testSecret, "HS256", false},
		{"ed25519 pkcs8 file", "ed25519", pkcs8PEM(t, ed), "EdDSA", true},
		{"ed25519 inline", "ed25519", pkcs8PEM(t, ed), "EdDSA", false},
		{"es256 pkcs8", "es256", pkcs8PEM(t, ec), "ES256", true},
		{"es256 sec1", "es256", pemOf(t, "EC PRIVATE KEY", ecDER), "ES256", true},
		{"es256 sec1 with parameters", "ES256", ecParams + pemOf(t, "EC PRIVATE KEY", ecDER), "ES256", true},
		{"rs256 pkcs8", "rs256", pkcs8PEM(t, rk), "RS256", true},
		{"rs256 pkcs1", "rs256", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), "RS256", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := c.key
			if c.file {
				key = writeFile(t, "key.pem", c.key)
			}
			ts := testService(t, KeyConfig{Algorithm: c.alg, Key: key})
			tok := issueTestToken(t, ts)
			h := headerOf(t, tok)
			if h["alg"] != c.wantAlg || h["kid"] != ts.keys.signer.kid || h["typ"] != typAccess {
				t.Fatalf("header %v, want alg %s kid %s", h, c.wantAlg, ts.keys.signer.kid)
			}
			claims, err := ts.verifyAccess(tok)
			if err != nil {
				t.Fatalf("own token refused: %v", err)
			}
			if claims.Subject != "alice" || claims.SID != "sid-1" {
				t.Fatalf("claims %+v", claims)
			}
			// a one-bit change of the signature is refused
			parts := strings.Split(tok, ".")
			sig := []byte(parts[2])
			if sig[3] == 'A' {
				sig[3] = 'B'
			} else {
				sig[3] = 'A'
			}
			if _, err := ts.verifyAccess(parts[0] + "." + parts[1] + "." + string(sig)); err == nil {
				t.Fatal("tampered signature accepted")
			}
		})
	}
}

// TestKeysKIDIsThumbprint checks kids against RFC 7638 §3.1 (RSA) and
// RFC 8037 §A.3 (Ed25519), and that the HMAC kid is derived, not the secret.
func TestKeysKIDIsThumbprint(t *testing.T) {
	rsaJWK := &publicJWK{Kty: "RSA", E: "AQAB",
		N: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
	if got := rsaJWK.thumbprint(); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("RSA thumbprint %s", got)
	}
	edJWK := &publicJWK{Kty: "OKP", Crv: "Ed25519", X: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
	if got := edJWK.thumbprint(); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("Ed25519 thumbprint %s", got)
	}
	ed, ec, rk := testKeys(t)
	for alg, priv := range map[string]crypto.Signer{"ed25519": ed, "es256": ec, "rs256": rk} {
		k, err := loadKey(KeyConfig{Algorithm: alg, Key: pkcs8PEM(t, priv)}, true)
		if err != nil {
			t.Fatal(err)
		}
		jwk, err := newPublicJWK(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if k.kid != jwk.thumbprint() {
			t.Fatalf("%s kid %s, want thumbprint %s", alg, k.kid, jwk.thumbprint())
		}
		// a public PEM of the same key gives the same kid
		pub, err := loadKey(KeyConfig{Algorithm: alg, Key: pkixPEM(t, priv.Public())}, false)
		if err != nil {
			t.Fatal(err)
		}
		if pub.kid != k.kid || pub.sign != nil {
			t.Fatalf("%s: public key kid %s (sign %v), want %s", alg, pub.kid, pub.sign != nil, k.kid)
		}
	}
	h, err := loadKey(KeyConfig{Algorithm: "hs256", Key: testSecret}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.kid, "hs256-") || strings.Contains(h.kid, "0123456789") || h.jwk != nil {
		t.Fatalf("hmac kid %q", h.kid)
	}
}

// TestKeysRefused covers every way a key config is refused.
func TestKeysRefused(t *testing.T) {
	ed, ec, _ := testKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER := mustX25519PKCS8(t)
	cases := []struct {
		name    string
		kc      KeyConfig
		signing bool
		want    string
	}{
		{"short secret", KeyConfig{Algorithm: "hs256", Key: "too short"}, true, "at least 32"},
		{"no algorithm", KeyConfig{Key: testSecret}, true, "algorithm is required"},
		{"unknown algorithm", KeyConfig{Algorithm: "ps256", Key: "x"}, true, "unsupported algorithm"},
		{"rsa 1024 signing", KeyConfig{Algorithm: "rs256", Key: pkcs8PEM(t, small)}, true, "1024 bits"},
		{"rsa 1024 verify", KeyConfig{Algorithm: "rs256", Key: pkixPEM(t, &small.PublicKey)}, false, "1024 bits"},
		{"ed25519 key as es256", KeyConfig{Algorithm: "es256", Key: pkcs8PEM(t, ed)}, true, "Ed25519 key, not an ECDSA"},
		{"ec key as ed25519", KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ec)}, true, "not an Ed25519"},
		{"ec key as rs256", KeyConfig{Algorithm: "rs256", Key: pkcs8PEM(t, ec)}, true, "not an RSA"},
		{"p384 as es256", KeyConfig{Algorithm: "es256", Key: pkcs8PEM(t, p384)}, true, "P-256"},
		{"public key to sign", KeyConfig{Algorithm: "ed25519", Key: pkixPEM(t, ed.Public())}, true, "must be a private key"},
		{"x25519", KeyConfig{Algorithm: "ed25519", Key: pemOf(t, "PRIVATE KEY", x25519DER)}, true, "X25519"},
		{"missing file", KeyConfig{Algorithm: "ed25519", Key: filepath.Join(t.TempDir(), "nope.pem")}, true, "reading key file"},
		{"empty key", KeyConfig{Algorithm: "ed25519"}, true, "PEM file is required"},
		{"not pem", KeyConfig{Algorithm: "ed25519", Key: "-----BEGIN nonsense"}, true, "no PEM key"},
		{"garbage der", KeyConfig{Algorithm: "ed25519", Key: pemOf(t, "PRIVATE KEY", []byte("garbage"))}, true, "parsing PRIVATE KEY"},
		{"unknown block", KeyConfig{Algorithm: "ed25519", Key: pemOf(t, "OPENSSH PRIVATE KEY", []byte("x"))}, true, "unsupported PEM block"},
		{"encrypted pkcs8", KeyConfig{Algorithm: "ed25519", Key: pemOf(t, "ENCRYPTED PRIVATE KEY", []byte("x"))}, true, "encrypted"},
		{"encrypted legacy", KeyConfig{Algorithm: "rs256", Key: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("x")}))}, true, "encrypted"},
		{"two keys", KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed) + pkcs8PEM(t, ec)}, true, "more than one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadKey(c.kc, c.signing)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	t.Run("verify key auto kid reusing the signing kid", func(t *testing.T) {
		signing := KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}
		_, err := newKeyRing(signing, []KeyConfig{{KID: "auto", Algorithm: "ed25519", Key: pkixPEM(t, ed.Public())}})
		if err == nil || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("verify key reusing the signing kid", func(t *testing.T) {
		signing := KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}
		k, _ := loadKey(signing, true)
		_, err := newKeyRing(signing, []KeyConfig{{KID: k.kid, Algorithm: "hs256", Key: testSecret}})
		if err == nil || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("bad verify key", func(t *testing.T) {
		_, err := newKeyRing(KeyConfig{Algorithm: "hs256", Key: testSecret}, []KeyConfig{{KID: "old", Algorithm: "rs256", Key: pkixPEM(t, &small.PublicKey)}})
		if err == nil || !strings.Contains(err.Error(), "verify_key old") {
			t.Fatalf("error %v", err)
		}
	})
}

func mustX25519PKCS8(t testing.TB) []byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestKeysRotation: a token signed by the old key, now a verify_key, is
// still accepted; new tokens are signed with the new key; a verify key
// never signs.
func TestKeysRotation(t *testing.T) {
	ed, ec, rk := testKeys(t)
	for name, c := range map[string]struct{ old, next KeyConfig }{
		"hs256 to ed25519": {KeyConfig{Algorithm: "hs256", Key: testSecret}, KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}},
		"ed25519 to es256": {KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}, KeyConfig{Algorithm: "es256", Key: pkcs8PEM(t, ec)}},
		"es256 to rs256":   {KeyConfig{Algorithm: "es256", Key: pkcs8PEM(t, ec)}, KeyConfig{Algorithm: "rs256", Key: pkcs8PEM(t, rk)}},
		"rs256 to hs256":   {KeyConfig{Algorithm: "rs256", Key: pkcs8PEM(t, rk)}, KeyConfig{Algorithm: "hs256", Key: testSecret}},
	} {
		t.Run(name, func(t *testing.T) {
			before := testService(t, c.old)
			oldTok := issueTestToken(t, before)
			oldKID := before.keys.signer.kid

			verify := c.old
			verify.KID = oldKID
			if verify.Algorithm != "hs256" {
				// the old key given as a public key, as an operator may
				pub := before.keys.signer.verify
				verify.Key = pkixPEM(t, pub)
			}
			after := testService(t, c.next, verify)
			if _, err := after.verifyAccess(oldTok); err != nil {
				t.Fatalf("token of the old key refused after rotation: %v", err)
			}
			newTok := issueTestToken(t, after)
			if kid := headerOf(t, newTok)["kid"]; kid == oldKID || kid != after.keys.signer.kid {
				t.Fatalf("new token kid %v, old %s", kid, oldKID)
			}
			if _, err := after.verifyAccess(newTok); err != nil {
				t.Fatal(err)
			}
			// the old service does not know the new key
			if _, err := before.verifyAccess(newTok); err == nil {
				t.Fatal("old ring accepted a token of a key it does not have")
			}
			if after.keys.byKID[oldKID].sign != nil {
				t.Fatal("verify key kept its private half")
			}
		})
	}
}

// TestKeysVerifyKeyFromPrivatePEM: a private PEM works as a verify key,
// and only its public half is kept.
func TestKeysVerifyKeyFromPrivatePEM(t *testing.T) {
	_, ec, _ := testKeys(t)
	old := testService(t, KeyConfig{Algorithm: "es256", Key: pkcs8PEM(t, ec)})
	tok := issueTestToken(t, old)
	path := writeFile(t, "old.pem", pkcs8PEM(t, ec))
	ts := testService(t, KeyConfig{Algorithm: "hs256", Key: testSecret}, KeyConfig{KID: old.keys.signer.kid, Algorithm: "es256", Key: path})
	if _, err := ts.verifyAccess(tok); err != nil {
		t.Fatal(err)
	}
	k := ts.keys.byKID[old.keys.signer.kid]
	if k.sign != nil {
		t.Fatal("verify key can sign")
	}
	// the cached parse of the same PEM as a signing key is not affected
	again, err := loadKey(KeyConfig{Algorithm: "es256", Key: path}, true)
	if err != nil || again.sign == nil {
		t.Fatalf("signing key from the same file: %v", err)
	}
}

// TestKeysChangedFileIsReread: the parse cache is keyed by content, so a
// key file replaced on disk is used on the next load (a reload).
func TestKeysChangedFileIsReread(t *testing.T) {
	ed, ec, _ := testKeys(t)
	path := writeFile(t, "key.pem", pkcs8PEM(t, ed))
	k1, err := loadKey(KeyConfig{Algorithm: "ed25519", Key: path}, true)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if err := os.WriteFile(path, []byte(pkcs8PEM(t, other)), 0o600); err != nil {
		t.Fatal(err)
	}
	k2, err := loadKey(KeyConfig{Algorithm: "ed25519", Key: path}, true)
	if err != nil {
		t.Fatal(err)
	}
	if k1.kid == k2.kid {
		t.Fatal("changed key file not picked up")
	}
	if err := os.WriteFile(path, []byte(pkcs8PEM(t, ec)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(KeyConfig{Algorithm: "ed25519", Key: path}, true); err == nil {
		t.Fatal("an ECDSA key in place of the Ed25519 one was accepted")
	}
}

// TestKeysVerifyKeyAutoKID: `auto` (and, in JSON, an empty kid) gives a
// verify key the id this plugin signed with: the thumbprint, or the
// HMAC-derived id. A token of the former signing key is accepted.
func TestKeysVerifyKeyAutoKID(t *testing.T) {
	_, _, rk := testKeys(t)
	for name, old := range map[string]KeyConfig{
		"rs256": {Algorithm: "rs256", Key: pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))},
		"hs256": {Algorithm: "hs256", Key: testSecret},
	} {
		for _, kid := range []string{"auto", ""} {
			before := testService(t, old)
			tok := issueTestToken(t, before)
			verify := old
			verify.KID = kid
			after := testService(t, KeyConfig{Algorithm: "hs256", Key: testSecret + "-new"}, verify)
			if _, err := after.verifyAccess(tok); err != nil {
				t.Fatalf("%s kid %q: %v", name, kid, err)
			}
			if _, ok := after.keys.byKID[before.keys.signer.kid]; !ok {
				t.Fatalf("%s kid %q: key not under %s", name, kid, before.keys.signer.kid)
			}
		}
	}
}
