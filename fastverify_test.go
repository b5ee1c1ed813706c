package tokenauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// signRaw signs any header and claims JSON with the test secret, as HS256.
func signRaw(header, claims string) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestFastPathAgreesWithParser: on every token below, the HS256 fast path
// either steps aside or accepts exactly what the golang-jwt path accepts,
// with the same claims; and it does accept the plugin's own tokens.
func TestFastPathAgreesWithParser(t *testing.T) {
	ts, _ := newTestTokens(t, 0)
	kid := ts.keys.signer.kid
	now := time.Now().Unix()
	hdr := func(extra string) string {
		return fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"at+jwt"%s}`, kid, extra)
	}
	claims := func(mod string) string {
		c := fmt.Sprintf(`"iss":"test-issuer","aud":["test-realm"],"sub":"alice","sid":"s1","jti":"j","iat":%d,"nbf":%d,"exp":%d,"roles":["a"],"team":"blue"`, now, now, now+600)
		return "{" + c + mod + "}"
	}
	issued := mintAccess(t, ts, testUser, "s1")
	parts := strings.Split(issued, ".")

	cases := []struct {
		name     string
		token    string
		wantFast bool // the fast path must accept it
	}{
		{"issued token", issued, true},
		{"hand-signed token", signRaw(hdr(""), claims("")), true},
		{"typ with application/ prefix", signRaw(fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"application/at+jwt"}`, kid), claims("")), true},
		{"header with spaces", signRaw(fmt.Sprintf(`{ "alg" : "HS256" , "kid" : %q , "typ" : "at+jwt" }`, kid), claims("")), true},
		{"alg none", signRaw(fmt.Sprintf(`{"alg":"none","kid":%q,"typ":"at+jwt"}`, kid), claims("")), false},
		{"alg HS384 header", signRaw(fmt.Sprintf(`{"alg":"HS384","kid":%q,"typ":"at+jwt"}`, kid), claims("")), false},
		{"refresh typ", signRaw(fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"rt+jwt"}`, kid), claims("")), false},
		{"no typ", signRaw(fmt.Sprintf(`{"alg":"HS256","kid":%q}`, kid), claims("")), false},
		{"unknown kid", signRaw(`{"alg":"HS256","kid":"nope","typ":"at+jwt"}`, claims("")), false},
		{"jku header", signRaw(hdr(`,"jku":"https://evil/"`), claims("")), false},
		{"duplicate kid", signRaw(hdr(`,"kid":"nope"`), claims("")), false},
		{"crit header", signRaw(hdr(`,"crit":["exp"]`), claims("")), false},
		{"expired", signRaw(hdr(""), claims(fmt.Sprintf(`,"exp":%d`, now-1))), false},
		{"exp now", signRaw(hdr(""), claims(fmt.Sprintf(`,"exp":%d`, now))), false},
		{"no exp", signRaw(hdr(""), strings.Replace(claims(""), `"exp"`, `"xp"`, 1)), false},
		{"nbf in the future", signRaw(hdr(""), claims(fmt.Sprintf(`,"nbf":%d`, now+100))), false},
		{"iat in the future", signRaw(hdr(""), claims(fmt.Sprintf(`,"iat":%d`, now+100))), false},
		{"wrong iss", signRaw(hdr(""), claims(`,"iss":"other"`)), false},
		{"wrong aud", signRaw(hdr(""), claims(`,"aud":"other"`)), false},
		{"aud as string", signRaw(hdr(""), strings.Replace(claims(""), `"aud":["test-realm"]`, `"aud":"test-realm"`, 1)), true},
		{"no sid", signRaw(hdr(""), claims(`,"sid":""`)), false},
		{"no sub", signRaw(hdr(""), claims(`,"sub":null`)), false},
		{"sub of wrong type", signRaw(hdr(""), claims(`,"sub":1`)), false},
		{"number with plus sign", signRaw(hdr(""), claims(`,"exp":+99999999999`)), false},
		{"number with leading zero", signRaw(hdr(""), claims(`,"exp":099999999999`)), false},
		{"broken reserved claim", signRaw(hdr(""), claims(`,"gen":tru`)), false},
		{"duplicate key inside gen", signRaw(hdr(""), claims(`,"gen":{"a":1,"a":2}`)), false},
		{"duplicate key inside id", signRaw(hdr(""), claims(`,"id":[{"b":1,"b":1}]`)), false},
		{"duplicate key inside typ", signRaw(hdr(""), claims(`,"typ":{"x":{"c":1,"c":2}}`)), false},
		{"claims not an object", signRaw(hdr(""), `["x"]`), false},
		{"trailing data", signRaw(hdr(""), claims("")+"x"), false},
		{"flipped signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), false},
		{"padded payload", parts[0] + "." + parts[1] + "==." + parts[2], false},
		{"non-canonical signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + nonCanonical(parts[2]), false},
		{"four segments", issued + ".x", false},
		{"two segments", parts[0] + "." + parts[1], false},
		{"swapped segments", parts[1] + "." + parts[0] + "." + parts[2], false},
		{"empty", "", false},
	}
	for _, tc := range cases {
		fast, fastOK := ts.fastVerifyAccess(tc.token)
		full, fullErr := ts.verifyAccess(tc.token)
		if fastOK && fullErr != nil {
			t.Errorf("%s: fast path accepted a token the parser refuses (%v)", tc.name, fullErr)
		}
		if fastOK && !reflect.DeepEqual(fast, full) {
			t.Errorf("%s: claims differ:\n fast %+v\n full %+v", tc.name, fast, full)
		}
		if tc.wantFast && !fastOK {
			t.Errorf("%s: fast path stepped aside (parser: %v)", tc.name, fullErr)
		}
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

// nonCanonical returns a last base64 character that decodes to the same
// bytes with different unused bits (32 bytes leave 2 spare bits).
func nonCanonical(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return string(alphabet[i^1])
}

func TestFastPathCoversCacheMisses(t *testing.T) {
	ts, _ := newTestTokens(t, 0)
	tok := mintAccess(t, ts, testUser, "s1")
	// the parser path cannot accept without a parser: the fast path must
	ts.parser = nil
	c, err := ts.verifyAccessCached(tok)
	if err != nil || c.SID != "s1" {
		t.Fatalf("verifyAccessCached did not use the fast path: %v", err)
	}
}

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
	ed, ec := testenv.NewKeys(t)
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return ed, ec, rs
}

// signRawWith signs header and claims JSON as HS256 with secret.
func signRawWith(secret, header, claims string) string {
	input := b64s(header) + "." + b64s(claims)
	return input + "." + hmacSign([]byte(secret), input)
}

func mustDecode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRegisteredClaimsValidMatchesValidator: the fast path's own check of
// the registered claims says yes exactly when the jwt.Validator built from
// the parser's options accepts, at the edges of every time claim and for
// every form of iss and aud.
func TestRegisteredClaimsValidMatchesValidator(t *testing.T) {
	ts, clock := newTestTokens(t, 0)
	now := clock.now()
	at := func(d time.Duration) *jwt.NumericDate { return &jwt.NumericDate{Time: now.Add(d)} }
	times := []*jwt.NumericDate{nil, at(-time.Hour), at(-time.Nanosecond), at(0), at(time.Nanosecond), at(time.Hour)}
	auds := []jwt.ClaimStrings{nil, {}, {""}, {"test-realm"}, {"other"}, {"other", "test-realm"}, {"", "test-realm"}, {"test-realm "}}
	issuers := []string{"", "test-issuer", "other", "Test-Issuer"}
	n := 0
	for _, exp := range times {
		for _, nbf := range times {
			for _, iat := range times {
				for _, aud := range auds {
					for _, iss := range issuers {
						c := &accessClaims{RegisteredClaims: jwt.RegisteredClaims{
							ExpiresAt: exp, NotBefore: nbf, IssuedAt: iat, Audience: aud, Issuer: iss,
						}}
						want := ts.validator.Validate(c) == nil
						if got := ts.registeredClaimsValid(&c.RegisteredClaims, now); got != want {
							t.Fatalf("exp %v nbf %v iat %v aud %q iss %q: fast check %v, validator %v", exp, nbf, iat, aud, iss, got, want)
						}
						if want {
							n++
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no combination was valid: the table tests nothing")
	}
}

// TestFastPathAllocations: a first-seen token without custom claims costs
// the fast path two allocations, the claims and one string holding every
// claim string (its lists and dates live in the claims' arena); the HMAC,
// the header and the payload need none.
func TestFastPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	ts, _ := newTestTokens(t, 0)
	u := *testUser
	u.Claims = nil
	tok := mintAccess(t, ts, &u, "s1")
	if _, ok := ts.fastVerifyAccess(tok); !ok {
		t.Fatal("the fast path stepped aside on the plugin's own token")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ts.fastVerifyAccess(tok) }); n > 2 {
		t.Fatalf("%v allocations per verification, want at most 2", n)
	}
	// custom claims that are strings cost their map and its values only
	// (encoding/json, which decoded them before, took ten more per claim)
	u.Claims = map[string]any{"team": "blue", "org": "acme", "plan": "pro"}
	tok = mintAccess(t, ts, &u, "s1")
	if c, ok := ts.fastVerifyAccess(tok); !ok || c.Extra["org"] != "acme" {
		t.Fatal("the fast path stepped aside on the plugin's own token, or lost a claim")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ts.fastVerifyAccess(tok) }); n > 7 {
		t.Fatalf("%v allocations per verification with three string claims, want at most 7", n)
	}
}

// TestRefreshFastPath: the plugin's own refresh tokens take the fast path
// with the claims the full path gives; what the fast path does not take
// (another claim, an escaped claim name, a null, a gen encoding/json would not
// decode, an access token) steps aside, and the full path still decides.
func TestRefreshFastPath(t *testing.T) {
	ts, _ := newTestTokens(t, 0)
	s := Session{ID: "s1", User: "alice", Generation: 7, Expires: time.Now().Add(time.Hour)}
	tok, err := ts.issueRefresh(s)
	if err != nil {
		t.Fatal(err)
	}
	fast, ok := ts.fastVerifyRefresh(tok)
	if !ok {
		t.Fatal("the fast path stepped aside on the plugin's own refresh token")
	}
	full := new(refreshClaims)
	if err := ts.verify(tok, typRefresh, full); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fast, full) || fast.Generation != 7 || fast.SID != "s1" {
		t.Fatalf("fast path claims %+v, parser %+v", fast, full)
	}

	kid := ts.keys.signer.kid
	hdr := fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"rt+jwt"}`, kid)
	exp := time.Now().Add(time.Hour).Unix()
	good := fmt.Sprintf(`{"iss":"test-issuer","sub":"alice","aud":["test-realm"],"exp":%d,"jti":"j","sid":"s1","gen":3}`, exp)
	if _, ok := ts.fastVerifyRefresh(signRaw(hdr, good)); !ok {
		t.Fatal("the fast path stepped aside on a plain refresh token")
	}
	if c, ok := ts.fastVerifyRefresh(signRaw(hdr, strings.Replace(good, `"sid":"s1"`, `"sid":"s\u0031"`, 1))); !ok || c.SID != "s1" {
		t.Fatalf("an escaped value: taken %v, claims %+v", ok, c)
	}
	for _, c := range []struct {
		name, header, claims string
		fullAccepts          bool
	}{
		{"another claim", hdr, strings.Replace(good, `"jti":"j"`, `"jti":"j","x":1`, 1), true},
		{"escaped key", hdr, strings.Replace(good, `"sid":"s1"`, `"\u0073id":"s1"`, 1), true},
		{"null", hdr, strings.Replace(good, `"jti":"j"`, `"jti":null`, 1), true},
		{"gen with a fraction", hdr, strings.Replace(good, `"gen":3`, `"gen":3.0`, 1), false},
		{"gen out of range", hdr, strings.Replace(good, `"gen":3`, `"gen":18446744073709551616`, 1), false},
		{"gen 0", hdr, strings.Replace(good, `"gen":3`, `"gen":0`, 1), false},
		{"duplicate claim", hdr, strings.Replace(good, `"gen":3`, `"gen":3,"gen":4`, 1), false},
		{"access token", strings.Replace(hdr, "rt+jwt", "at+jwt", 1), good, false},
		{"expired", hdr, strings.Replace(good, fmt.Sprint(exp), "1", 1), false},
		{"other audience", hdr, strings.Replace(good, "test-realm", "other", 1), false},
	} {
		raw := signRaw(c.header, c.claims)
		if _, ok := ts.fastVerifyRefresh(raw); ok {
			t.Errorf("%s: taken by the fast path", c.name)
		}
		if _, err := ts.verifyRefresh(raw); (err == nil) != c.fullAccepts {
			t.Errorf("%s: verifyRefresh error %v, want accepted %v", c.name, err, c.fullAccepts)
		}
	}
}

// TestKnownHeadersAnswerAsDecoding: the header segments the ring lists
// (keyOfKnownHeader, no decoding) are the ones this plugin's tokens carry,
// for every key and both token types, and each names the key decoding it
// names (keyOfHeader); a segment that differs in anything is not listed.
func TestKnownHeadersAnswerAsDecoding(t *testing.T) {
	ed, ec, rs := testKeys(t)
	ts := testService(t, KeyConfig{Algorithm: "hs256", Key: testSecret},
		KeyConfig{Algorithm: "ed25519", KID: "ed", Key: pkcs8PEM(t, ed)},
		KeyConfig{Algorithm: "es256", KID: "ec", Key: pkcs8PEM(t, ec)},
		KeyConfig{Algorithm: "rs256", KID: "rs", Key: pkcs8PEM(t, rs)})
	ring := ts.keys
	if want := 2 * len(ring.ordered); len(ring.headers) != want {
		t.Fatalf("%d known headers, want %d (two per key)", len(ring.headers), want)
	}
	for _, h := range ring.headers {
		if got := ring.keyOfHeader(h.segment, h.typ); got != h.key || got == nil {
			t.Errorf("%s %s: decoding names %v, the list %v", h.key.kid, h.typ, got, h.key)
		}
		other := typRefresh
		if h.typ == typRefresh {
			other = typAccess
		}
		if ring.keyOfKnownHeader(h.segment, other) != nil {
			t.Errorf("%s: a %s header taken for a %s token", h.key.kid, h.typ, other)
		}
		hdr, _ := base64.RawURLEncoding.DecodeString(h.segment)
		for _, variant := range []string{
			strings.Replace(string(hdr), `{`, `{ `, 1),
			strings.Replace(string(hdr), h.key.kid, h.key.kid+"x", 1),
			strings.Replace(string(hdr), h.typ, strings.ToUpper(h.typ), 1),
		} {
			seg := base64.RawURLEncoding.EncodeToString([]byte(variant))
			if ring.keyOfKnownHeader(seg, h.typ) != nil {
				t.Errorf("variant %s listed as known", variant)
			}
		}
	}
	// the tokens this plugin signs carry a listed header
	access := issueTestToken(t, ts)
	refresh, err := ts.issueRefresh(Session{ID: "s1", User: "alice", Generation: 1, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for tok, typ := range map[string]string{access: typAccess, refresh: typRefresh} {
		seg, _, _ := strings.Cut(tok, ".")
		if ring.keyOfKnownHeader(seg, typ) != ring.signer {
			t.Errorf("the %s token's header %s is not listed for the signing key", typ, seg)
		}
	}
}
