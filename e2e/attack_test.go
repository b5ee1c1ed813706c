package e2e

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// The attack corpus: forged and malformed tokens against a running Caddy.
// Every one is sent to the guard, to Feathers' jwt strategy and to the
// refresh endpoint, and must get 401 from each. Tokens signed with the real
// secret check that the claim and header checks refuse them, not only the
// signature; the controls at the end prove those tokens are otherwise valid.

func b64s(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func hmacSign(key []byte, input string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// flipUnusedBit changes the last character of a base64url segment to one
// that decodes to the same bytes when decoding is lenient.
func flipUnusedBit(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last^1])
}

type attackCase struct {
	name   string
	header string // template
	claims string // template
	key    []byte
	// sign, when set, builds the token from the filled header and claims.
	sign func(h, c string) string
	raw  string // a ready token instead
	// notAt skips a place where the raw token is legitimately valid.
	notAt string
}

// The token types of the contract (CONTRACT.md, wire format).
const (
	typAccess  = "at+jwt"
	typRefresh = "rt+jwt"
)

const (
	baseHeader = `{"alg":"HS256","kid":"KID","typ":"TYP"}`
	baseClaims = `{"iss":"caddy-token-auth","aud":["a"],"sub":"alice","sid":"SID"GEN,"iat":NOW,"nbf":NOW,"exp":EXP,"jti":"forged"}`
)

func TestAttackCorpus(t *testing.T) {
	user := testenv.Hash(t, "alice-pw")
	realmBlock := func(realm, extra string) string {
		return fmt.Sprintf(`handle /%[1]s/* {
		token_auth /%[1]s/private/* {
			realm %[1]s
			endpoint /%[1]s/auth
			signing_key hs256 %[2]s
			store memory
			throttle off
			user alice %[3]s
			%[4]s
		}
		respond "%[1]s: guarded content"
	}`, realm, e2eSecret, user, extra)
	}
	p := startCaddy(t, "", realmBlock("a", "")+"\n"+realmBlock("b", "issuer other-issuer"))

	login := func(realm string) apiResponse {
		r := p.do("POST", "/"+realm+"/auth", map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"})
		if r.Status != 201 {
			t.Fatalf("login to %s: %d %s", realm, r.Status, r.Raw)
		}
		return r
	}
	a, b := login("a"), login("b")
	sidOf := func(r apiResponse) string {
		sid, _ := r.Body["authentication"].(map[string]any)["payload"].(map[string]any)["sid"].(string)
		return sid
	}
	sid := sidOf(a)
	kid := kidOf(t, a.str("accessToken")) // the server's id for e2eSecret
	now := time.Now().Unix()
	secret := []byte(e2eSecret)

	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(edPub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	withClaims := func(old, repl string) string { return strings.Replace(baseClaims, old, repl, 1) }
	withHeader := func(old, repl string) string { return strings.Replace(baseHeader, old, repl, 1) }
	signWith := func(key []byte, mutate func(tok string) string) func(h, c string) string {
		return func(h, c string) string {
			in := b64s(h) + "." + b64s(c)
			return mutate(in + "." + hmacSign(key, in))
		}
	}

	var cases []attackCase
	add := func(c attackCase) { cases = append(cases, c) }

	// alg none, any spelling, with and without a signature.
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		h := withHeader(`"HS256"`, `"`+alg+`"`)
		add(attackCase{name: "alg " + alg + " unsigned", header: h, sign: func(h, c string) string { return b64s(h) + "." + b64s(c) + "." }})
		add(attackCase{name: "alg " + alg + " real signature", header: h, key: secret})
		add(attackCase{name: "alg " + alg + " junk signature", header: h, sign: func(h, c string) string { return b64s(h) + "." + b64s(c) + ".AAAA" }})
	}
	add(attackCase{name: "alg missing", header: `{"kid":"KID","typ":"TYP"}`, key: secret})
	add(attackCase{name: "alg HS512", header: withHeader(`"HS256"`, `"HS512"`), key: secret})
	add(attackCase{name: "alg RS256", header: withHeader(`"HS256"`, `"RS256"`), key: secret})
	add(attackCase{name: "alg EdDSA", header: withHeader(`"HS256"`, `"EdDSA"`), key: secret})

	// Null and truncated signatures.
	for name, suffix := range map[string]string{"empty signature": ".", "no signature part": "", "null signature": ".null", "short signature": ".AA", "zero signature": "." + b64s(string(make([]byte, 32)))} {
		add(attackCase{name: name, sign: func(h, c string) string { return b64s(h) + "." + b64s(c) + suffix }})
	}

	// Blank and common HMAC secrets, with our kid and without any.
	for _, s := range []string{"", "secret", "password", "123456", "changeme", "your-256-bit-secret", "jwt", "key", "null", "undefined", e2eSecret[:31], e2eSecret + " "} {
		add(attackCase{name: fmt.Sprintf("secret %q", s), key: []byte(s)})
		add(attackCase{name: fmt.Sprintf("secret %q, no kid", s), header: `{"alg":"HS256","typ":"TYP"}`, key: []byte(s)})
	}

	// HS256 with a public key as the HMAC secret (algorithm confusion).
	add(attackCase{name: "HS256 keyed with an Ed25519 public key PEM", key: pubPEM})
	add(attackCase{name: "HS256 keyed with an Ed25519 public key (raw)", key: edPub})
	add(attackCase{name: "HS256 keyed with a public key PEM, kid of it", header: withHeader(`"KID"`, `"ed25519-1"`), key: pubPEM})

	// kid: path traversal, injection, wrong types; signed with what such a
	// kid would resolve to (an empty file, a guessed secret).
	for _, k := range []string{"../../../../../../dev/null", "/dev/null", "../../../etc/passwd", "..%2f..%2fdev%2fnull", "' OR '1'='1", "x' UNION SELECT 'secret' -- ", "|cat /etc/passwd", "$(id)", "`id`", `KID\u0000`, `\u0000`, "KID ", "", "http://127.0.0.1:1/key"} {
		h := withHeader(`"KID"`, `"`+k+`"`)
		add(attackCase{name: fmt.Sprintf("kid %q, empty key", k), header: h, key: nil})
		add(attackCase{name: fmt.Sprintf("kid %q, key \"secret\"", k), header: h, key: []byte("secret")})
	}
	add(attackCase{name: "kid a number", header: withHeader(`"KID"`, `0`), key: nil})
	add(attackCase{name: "kid an array", header: withHeader(`"KID"`, `["KID"]`), key: secret})
	add(attackCase{name: "kid an object", header: withHeader(`"KID"`, `{"kid":"KID"}`), key: secret})

	// Headers pointing elsewhere for the key.
	attacker := []byte("attacker-controlled-hmac-key-0123456789")
	for name, extra := range map[string]string{
		"jku": `"jku":"http://127.0.0.1:1/jwks.json"`,
		"x5u": `"x5u":"http://127.0.0.1:1/cert.pem"`,
		"jwk": `"jwk":{"kty":"oct","k":"` + base64.RawURLEncoding.EncodeToString(attacker) + `"}`,
		"x5c": `"x5c":["MIIB"]`,
	} {
		add(attackCase{name: name + " header, our kid", header: strings.Replace(baseHeader, "{", "{"+extra+",", 1), key: attacker})
		add(attackCase{name: name + " header, its kid", header: `{"alg":"HS256","kid":"attacker",` + extra + `,"typ":"TYP"}`, key: attacker})
	}

	// typ confusion, signed with the real key.
	for _, typ := range []string{"JWT", "jwt", "", "at+jwt ", "application/jwt", "at+jwt,rt+jwt"} {
		add(attackCase{name: fmt.Sprintf("typ %q", typ), header: withHeader(`"TYP"`, `"`+typ+`"`), key: secret})
	}
	add(attackCase{name: "typ missing", header: `{"alg":"HS256","kid":"KID"}`, key: secret})
	add(attackCase{name: "typ a number", header: withHeader(`"TYP"`, `1`), key: secret})
	add(attackCase{name: "real refresh token as access token", raw: a.str("refreshToken"), notAt: "refresh"})
	add(attackCase{name: "real access token as refresh token", raw: a.str("accessToken"), notAt: "guard jwt strategy logout"})
	add(attackCase{name: "typ crossed: access shape with rt+jwt", header: withHeader(`"TYP"`, `"rt+jwt"`), claims: strings.Replace(baseClaims, "GEN", "", 1), key: secret})

	// Another realm or issuer.
	add(attackCase{name: "access token of realm b", raw: b.str("accessToken")})
	add(attackCase{name: "refresh token of realm b", raw: b.str("refreshToken")})
	add(attackCase{name: "other issuer", claims: withClaims(`"caddy-token-auth"`, `"evil"`), key: secret})
	add(attackCase{name: "issuer of realm b", claims: withClaims(`"caddy-token-auth"`, `"other-issuer"`), key: secret})
	add(attackCase{name: "no issuer", claims: withClaims(`"iss":"caddy-token-auth",`, ``), key: secret})
	add(attackCase{name: "audience b", claims: withClaims(`["a"]`, `["b"]`), key: secret})
	add(attackCase{name: "audience b as string", claims: withClaims(`["a"]`, `"b"`), key: secret})
	add(attackCase{name: "no audience", claims: withClaims(`"aud":["a"],`, ``), key: secret})
	add(attackCase{name: "empty audience", claims: withClaims(`["a"]`, `[]`), key: secret})
	add(attackCase{name: "no sub", claims: withClaims(`"sub":"alice",`, ``), key: secret})
	add(attackCase{name: "no sid", claims: withClaims(`"sid":"SID"`, `"sx":"SID"`), key: secret})

	// Duplicate keys: encoding/json keeps the last, another parser the first.
	add(attackCase{name: "duplicate typ", header: `{"alg":"HS256","kid":"KID","typ":"xx+jwt","typ":"TYP"}`, key: secret})
	add(attackCase{name: "duplicate alg", header: `{"alg":"none","alg":"HS256","kid":"KID","typ":"TYP"}`, key: secret})
	add(attackCase{name: "duplicate kid", header: `{"alg":"HS256","kid":"other","kid":"KID","typ":"TYP"}`, key: secret})
	add(attackCase{name: "duplicate sub", claims: withClaims(`"sub":"alice"`, `"sub":"mallory","sub":"alice"`), key: secret})
	add(attackCase{name: "duplicate exp", claims: withClaims(`"exp":EXP`, `"exp":1,"exp":EXP`), key: secret})
	add(attackCase{name: "duplicate aud", claims: withClaims(`"aud":["a"]`, `"aud":["b"],"aud":["a"]`), key: secret})
	add(attackCase{name: "duplicate sid", claims: withClaims(`"sid":"SID"`, `"sid":"other","sid":"SID"`), key: secret})
	add(attackCase{name: "duplicate nested key", claims: withClaims(`"jti":"forged"`, `"jti":"forged","team":{"x":1,"x":2}`), key: secret})

	// Non-canonical base64.
	add(attackCase{name: "signature with altered unused bits", sign: signWith(secret, func(tok string) string {
		i := strings.LastIndexByte(tok, '.')
		return tok[:i+1] + flipUnusedBit(tok[i+1:])
	})})
	add(attackCase{name: "claims with altered unused bits, re-signed", sign: func(h, c string) string {
		for len(c)%3 == 0 {
			c = strings.Replace(c, `"jti":"`, `"jti":"x`, 1)
		}
		in := b64s(h) + "." + flipUnusedBit(b64s(c))
		return in + "." + hmacSign(secret, in)
	}})
	add(attackCase{name: "padded segments, re-signed", sign: func(h, c string) string {
		for len(c)%3 == 0 {
			c = strings.Replace(c, `"jti":"`, `"jti":"x`, 1)
		}
		in := base64.URLEncoding.EncodeToString([]byte(h)) + "." + base64.URLEncoding.EncodeToString([]byte(c))
		return in + "." + hmacSign(secret, in)
	}})
	add(attackCase{name: "padded signature", sign: signWith(secret, func(tok string) string { return tok + "=" })})
	add(attackCase{name: "standard base64 alphabet, re-signed", sign: func(h, c string) string {
		for i := 0; !strings.ContainsAny(base64.RawStdEncoding.EncodeToString([]byte(c)), "+/"); i++ {
			c = strings.Replace(c, `"jti":"`, `"jti":"?`, 1)
		}
		in := b64s(h) + "." + base64.RawStdEncoding.EncodeToString([]byte(c))
		return in + "." + hmacSign(secret, in)
	}})
	add(attackCase{name: "whitespace inside", sign: signWith(secret, func(tok string) string { return tok[:10] + " " + tok[10:] })})
	add(attackCase{name: "four parts", sign: signWith(secret, func(tok string) string { return tok + ".x" })})

	// Time claims: strings, floats, huge numbers, future nbf/iat, none.
	for _, exp := range []string{`"EXP"`, `"1e10"`, `1e300`, `1e400`, `9.3e18`, `9223372036854775807`, `18446744073709551616`, `-1`, `0`, `-9.3e18`, `1e-300`, fmt.Sprintf("%d.5", now-2), `null`, `true`, `{}`, `[EXP]`, `253402300800`} {
		add(attackCase{name: "exp " + exp, claims: withClaims(`"exp":EXP`, `"exp":`+exp), key: secret})
	}
	add(attackCase{name: "no exp", claims: withClaims(`,"exp":EXP`, ``), key: secret})
	add(attackCase{name: "nbf in the future", claims: withClaims(`"nbf":NOW`, fmt.Sprintf(`"nbf":%d`, now+3600)), key: secret})
	add(attackCase{name: "nbf as a string", claims: withClaims(`"nbf":NOW`, `"nbf":"NOW"`), key: secret})
	add(attackCase{name: "nbf huge", claims: withClaims(`"nbf":NOW`, `"nbf":1e300`), key: secret})
	add(attackCase{name: "iat in the future", claims: withClaims(`"iat":NOW`, fmt.Sprintf(`"iat":%d`, now+3600)), key: secret})
	add(attackCase{name: "iat as a string", claims: withClaims(`"iat":NOW`, `"iat":"NOW"`), key: secret})

	// Garbage.
	for _, g := range []string{"x", "..", "a.b.c", "e30.e30.", b64s("{}") + "." + b64s("{}") + "." + b64s("x"), b64s("[]") + "." + b64s("[]") + ".", b64s(`"x"`) + "." + b64s("{}") + ".", b64s(baseHeader) + ".bm90IGpzb24." + "AAAA"} {
		add(attackCase{name: "garbage " + g, raw: g})
	}

	fill := func(tmpl, typ string) string {
		gen := ""
		if typ == typRefresh {
			gen = `,"gen":1`
		}
		return strings.NewReplacer("KID", kid, "TYP", typ, "SID", sid, "GEN", gen, "NOW", fmt.Sprint(now), "EXP", fmt.Sprint(now+600)).Replace(tmpl)
	}
	build := func(c attackCase, typ string) string {
		if c.raw != "" {
			return c.raw
		}
		h, cl := c.header, c.claims
		if h == "" {
			h = baseHeader
		}
		if cl == "" {
			cl = baseClaims
		}
		h, cl = fill(h, typ), fill(cl, typ)
		if c.sign != nil {
			return c.sign(h, cl)
		}
		in := b64s(h) + "." + b64s(cl)
		return in + "." + hmacSign(c.key, in)
	}

	for _, c := range cases {
		for _, typ := range []string{typAccess, typRefresh} {
			tok := build(c, typ)
			for _, try := range []struct {
				where string
				r     func() apiResponse
			}{
				{"guard", func() apiResponse { return p.do("GET", "/a/private/x", nil, "Authorization", "Bearer "+tok) }},
				{"jwt strategy", func() apiResponse {
					return p.do("POST", "/a/auth", map[string]string{"strategy": "jwt", "accessToken": tok})
				}},
				{"refresh", func() apiResponse {
					return p.do("POST", "/a/auth", map[string]string{"action": "refresh", "refresh_token": tok})
				}},
				{"logout", func() apiResponse { return p.do("DELETE", "/a/auth", nil, "Authorization", "Bearer "+tok) }},
			} {
				if c.notAt != "" && strings.Contains(c.notAt, try.where) {
					continue
				}
				r := try.r()
				if r.Status != 401 || strings.Contains(r.Raw, "guarded content") || strings.Contains(r.Raw, "accessToken") {
					t.Errorf("%s (%s) at %s: %d %s\ntoken %s", c.name, typ, try.where, r.Status, r.Raw, tok)
					// it may have rotated or revoked the session: start a
					// fresh one, so later cases fail for their own reasons
					sid = sidOf(login("a"))
					tok = build(c, typ)
				}
			}
			if c.raw != "" {
				break
			}
		}
	}
	t.Logf("%d attack cases refused", len(cases))

	// Controls: the same construction with nothing wrong is accepted, so
	// the refusals above are for the reasons named.
	good := build(attackCase{key: secret}, typAccess)
	if r := p.do("GET", "/a/private/x", nil, "Authorization", "Bearer "+good); r.Status != 200 || !strings.Contains(r.Raw, "a: guarded content") {
		t.Fatalf("control access token refused by the guard: %d %s\n%s", r.Status, r.Raw, p.Logs())
	}
	if r := p.do("POST", "/a/auth", map[string]string{"strategy": "jwt", "accessToken": good}); r.Status != 201 {
		t.Fatalf("control access token refused by the jwt strategy: %d %s", r.Status, r.Raw)
	}
	goodRefresh := build(attackCase{key: secret}, typRefresh)
	r := p.do("POST", "/a/auth", map[string]string{"action": "refresh", "refresh_token": goodRefresh})
	if r.Status != 201 {
		t.Fatalf("control refresh token refused: %d %s", r.Status, r.Raw)
	}
	var payload map[string]any
	seg := strings.Split(good, ".")[1]
	raw, _ := base64.RawURLEncoding.DecodeString(seg)
	if err := json.Unmarshal(raw, &payload); err != nil || payload["sid"] != sid {
		t.Fatalf("control claims %s", raw)
	}
}
