package tokenauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Fuzz targets, run briefly by test.d/check-fuzz.sh and at length with
//
//	go test -run '^$' -fuzz '^FuzzVerifyToken$' -fuzztime 10m .
//
// The seeds below run with every plain `go test`.

// FuzzVerifyToken: no input panics the verifier, and nothing but the exact
// token we signed (or another one we signed) is accepted.
func FuzzVerifyToken(f *testing.F) {
	ts := testService(f, KeyConfig{Algorithm: "hs256", Key: testSecret})
	exp := time.Now().Add(time.Hour)
	access, _, err := ts.issueAccess(&User{ID: "alice", Roles: []string{"a"}, Claims: map[string]any{"team": "x"}}, "sid", exp)
	if err != nil {
		f.Fatal(err)
	}
	refresh, err := ts.issueRefresh(Session{ID: "sid", User: "alice", Expires: exp, Generation: 3})
	if err != nil {
		f.Fatal(err)
	}
	// Workers rerun this setup and sign other tokens (fresh jti), so
	// "signed by us" is checked on the token itself: its signature is
	// exactly our HMAC of its first two segments.
	signedByUs := func(raw string) bool {
		parts := strings.Split(raw, ".")
		return len(parts) == 3 && parts[2] == hmacSign([]byte(testSecret), parts[0]+"."+parts[1])
	}
	for _, seed := range []string{
		access, refresh, "", ".", "..", "a.b.c", access + ".", access[:len(access)-1],
		strings.ToUpper(access), strings.Replace(access, ".", "..", 1),
		b64s(`{"alg":"none","typ":"at+jwt"}`) + "." + b64s(`{"sub":"alice","sid":"s","exp":1e300}`) + ".",
		b64s(`{"alg":"HS256","alg":"HS256"}`) + "." + b64s(`{}`) + ".AAAA",
		b64s(`{"alg":"HS256","kid":[[[[[]]]]]}`) + "." + b64s(`{"exp":"1"}`) + ".",
		strings.Repeat("a", maxTokenSize+1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if c, err := ts.verifyAccess(raw); err == nil && (!signedByUs(raw) || c.Subject != "alice") {
			t.Fatalf("accepted an access token we did not sign: %q", raw)
		}
		if c, err := ts.verifyRefresh(raw); err == nil && (!signedByUs(raw) || c.Generation != 3) {
			t.Fatalf("accepted a refresh token we did not sign: %q", raw)
		}
		_ = checkTokenJSON(raw)
	})
}

// FuzzDecodeAuthRequest: the endpoint's JSON parser never panics, and what
// it accepts is one JSON object it can give back.
// FuzzFastPathAgreesWithFullPath: arbitrary headers and claims, signed
// with the realm's key (so the signature never decides), are accepted by
// the fast path only if the full golang-jwt path accepts them, with the
// same claims.
func FuzzFastPathAgreesWithFullPath(f *testing.F) {
	ts, _ := newTestTokens(f, 0)
	kid := ts.keys.signer.kid
	hdr := fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"at+jwt"}`, kid)
	exp := time.Now().Add(time.Hour).Unix()
	good := fmt.Sprintf(`{"iss":"test-issuer","aud":["test-realm"],"sub":"alice","sid":"s1","jti":"j","exp":%d,"roles":["a"],"team":"blue"}`, exp)
	for _, seed := range [][2]string{
		{hdr, good},
		{hdr, strings.Replace(good, `"team":"blue"`, `"gen":{"a":1,"a":2}`, 1)},
		{hdr, strings.Replace(good, `"team":"blue"`, `"team":{"x":[1,{"y":2,"y":3}]}`, 1)},
		{hdr, strings.Replace(good, `"roles":["a"]`, `"roles":"a"`, 1)},
		{hdr, strings.Replace(good, `"aud":["test-realm"]`, `"aud":"test-realm"`, 1)},
		{strings.Replace(hdr, `"typ"`, ` "typ" `, 1), good},
		{fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"application/at+jwt"}`, kid), good},
		{hdr, good[:len(good)-1] + `,"exp":1}`},
		{hdr, `{"sub":"alice","sid":"s1","exp":1e300,"iss":"test-issuer","aud":"test-realm"}`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, header, claims string) {
		raw := signRaw(header, claims)
		fast, fastOK := ts.fastVerifyAccess(raw)
		if !fastOK {
			return
		}
		full, err := ts.verifyAccess(raw)
		if err != nil {
			t.Fatalf("fast path accepted what the full path refuses (%v): header %s claims %s", err, header, claims)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("claims differ:\n fast %+v\n full %+v", fast, full)
		}
	})
}

// FuzzRefreshFastPathAgreesWithFullPath: arbitrary headers and claims,
// signed with the realm's key, are accepted by the refresh tokens' fast
// path only if the full path (verify with golang-jwt, then verifyRefresh's
// checks) accepts them, with the same claims.
func FuzzRefreshFastPathAgreesWithFullPath(f *testing.F) {
	ts, _ := newTestTokens(f, 0)
	kid := ts.keys.signer.kid
	hdr := fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"rt+jwt"}`, kid)
	exp := time.Now().Add(time.Hour).Unix()
	good := fmt.Sprintf(`{"iss":"test-issuer","sub":"alice","aud":["test-realm"],"exp":%d,"nbf":1,"iat":1,"jti":"j","sid":"s1","gen":3}`, exp)
	for _, seed := range [][2]string{
		{hdr, good},
		{hdr, strings.Replace(good, `"gen":3`, `"gen":3.0`, 1)},
		{hdr, strings.Replace(good, `"gen":3`, `"gen":18446744073709551616`, 1)},
		{hdr, strings.Replace(good, `"gen":3`, `"gen":0`, 1)},
		{hdr, strings.Replace(good, `"sid":"s1"`, `"sid":"s\u0031"`, 1)},
		{hdr, strings.Replace(good, `"aud":["test-realm"]`, `"aud":"test-realm"`, 1)},
		{hdr, good[:len(good)-1] + `,"SID":"other"}`},
		{hdr, good[:len(good)-1] + `,"gen":4}`},
		{strings.Replace(hdr, "rt+jwt", "at+jwt", 1), good},
		{strings.Replace(hdr, "rt+jwt", "application/RT+JWT", 1), good},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, header, claims string) {
		raw := signRaw(header, claims)
		fast, fastOK := ts.fastVerifyRefresh(raw)
		if !fastOK {
			return
		}
		full := new(refreshClaims)
		if err := ts.verify(raw, typRefresh, full); err != nil {
			t.Fatalf("fast path accepted what the full path refuses (%v): header %s claims %s", err, header, claims)
		}
		if full.SID == "" || full.Subject == "" || full.Generation == 0 {
			t.Fatalf("fast path accepted what verifyRefresh refuses: %+v", full)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("claims differ:\n fast %+v\n full %+v", fast, full)
		}
	})
}

func FuzzDecodeAuthRequest(f *testing.F) {
	for _, seed := range []string{
		`{"strategy":"local","username":"alice","password":"pw"}`,
		`{"strategy":"local","email":"a@example.com","password":"pw"}`,
		`{"action":"refresh","refresh_token":"x.y.z"}`,
		`{"strategy":"refresh","refreshToken":"x.y.z"}`,
		`{"strategy":"jwt","accessToken":"x.y.z"}`,
		`{}`, `[]`, `null`, `"x"`, `{"a":1}{"b":2}`, `{"strategy":1}`, `{"password":"\ud800"}`,
		`{"strategy":"local","strategy":"jwt"}`, ` {"x": [1, {"y": null}]} `, `{`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAuthRequest(body)
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("error %T is not an API error", err)
			}
			return
		}
		if req == nil {
			t.Fatal("no request and no error")
		}
		if !json.Valid(body) || bytes.TrimSpace(body)[0] == '[' {
			// null is a valid JSON body giving an empty request
			if string(bytes.TrimSpace(body)) != "null" {
				t.Fatalf("accepted %q", body)
			}
		}
		if _, err := json.Marshal(req); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzUnmarshalCaddyfile: no directive block panics the parser.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"token_auth {\n\trealm a\n\tendpoint /auth\n\tsigning_key hs256 {env.SECRET}\n}",
		"token_auth {\n\tuser bob $2a$04$abcdefghijklmnopqrstuu5Fm7Hd3N3e3e3e3e3e3e3e3e3e3e3e {\n\t\temail b@x\n\t\troles a b\n\t\tclaim team blue\n\t}\n}",
		"token_auth {\n\tstore bolt /tmp/x.db\n\tstore memory\n\tstore redis redis://x\n}",
		"token_auth {\n\tthrottle 5 10m 10m\n\tmax_concurrent_hashes 4\n\trequire role admin\n}",
		"token_auth {\n\taccess_ttl 15m\n\tsession_ttl 720h\n\tidle_ttl 168h\n\treuse_grace 0\n}",
		"token_auth {\n\tverify_key old hs256 secret\n\tusers_file /x\n\tissuer i\n\taudience a\n}",
		"token_auth extra", "token_auth {\n\tuser\n}", "token_auth {\n\tthrottle off x\n}", "token_auth {\n\t{\n}",
		"token_auth {\n\tuser a b {\n\t\tuser c d {\n\t\t}\n\t}\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		ta := new(TokenAuth)
		_ = ta.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}

// FuzzParseUsersFile: no users file panics the parser, and every user it
// accepts is valid.
func FuzzParseUsersFile(f *testing.F) {
	h := "$2a$04$abcdefghijklmnopqrstuu5Fm7Hd3N3e3e3e3e3e3e3e3e3e3e3e"
	for _, seed := range []string{
		`{"users":[{"id":"alice","password":"` + h + `","email":"a@x","roles":["r"],"claims":{"team":"b"}}]}`,
		"alice:" + h + "\n# comment\n\nbob:" + h + "\n",
		`{"users":[{"id":"a","password":"$argon2id$v=19$m=47104,t=1,p=1$P2nzckEdTZ3bxCiBCkRTyA$xQL3Z32eo5jKl7u5tcIsnEKObYiyNZQQf5/4sAau6Pg"}]}`,
		`{"users":[{"id":"a","pasword":"x"}]}`, `{"users":{}}`, `{`, "a:b:c", ":", "\n\n:x\n", `{"users":[{"id":"a","claims":{"sub":1}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseUsersFile(data)
		if err != nil {
			if !strings.Contains(err.Error(), "line ") {
				t.Fatalf("error names no line: %v", err)
			}
			return
		}
		for i := range users {
			if err := users[i].validate(); err != nil {
				t.Fatalf("accepted an invalid user: %v", err)
			}
		}
	})
}

// FuzzSanitizeRedirect: whatever comes in, the answer is "/" or the input
// unchanged; it never leaves the origin when a browser resolves it against
// the site, carries no byte a browser would drop or reinterpret, and is a
// fixed point (sanitizing it again changes nothing).
func FuzzSanitizeRedirect(f *testing.F) {
	for _, seed := range []string{
		"/", "/private/", "/a?b=c#d", "//evil.com", "/\\evil.com", "https://evil.com", "javascript:alert(1)",
		"%2F%2Fevil.com", "/%2F%2Fevil.com", "/\t/evil.com", "/\n/evil.com", "/./..//evil", "/@evil.com",
		"/x:y", "/" + strings.Repeat("a", 3000), "", "\x00", "/é",
	} {
		f.Add(seed)
	}
	base, err := url.Parse("https://site.example/start/page")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := sanitizeRedirect(in)
		if out != "/" && out != in {
			t.Fatalf("%q became %q: neither the input nor /", in, out)
		}
		if again := sanitizeRedirect(out); again != out {
			t.Fatalf("not a fixed point: %q -> %q -> %q", in, out, again)
		}
		if strings.ContainsAny(out, "\\\t\r\n ") || strings.HasPrefix(out, "//") {
			t.Fatalf("%q kept a byte a browser reinterprets: %q", in, out)
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("%q: accepted %q does not parse: %v", in, out, err)
		}
		if dest := base.ResolveReference(u); dest.Scheme != base.Scheme || dest.Host != base.Host || dest.User != nil {
			t.Fatalf("%q leads to another origin: %s", in, dest)
		}
	})
}
