package tokenauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func testTokenService(t testing.TB) *tokenService {
	t.Helper()
	keys, err := newKeyRing(KeyConfig{Algorithm: "hs256", Key: strings.Repeat("k", 32)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newTokenService(keys, "iss", "aud", time.Minute)
}

func TestOversizedTokenRefusedBeforeParsing(t *testing.T) {
	ts := testTokenService(t)
	s := Session{ID: "sid", User: "alice", Expires: time.Now().Add(time.Hour), Generation: 1}
	small, _, err := ts.issueAccess(&User{ID: "alice"}, s.ID, s.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.verifyAccess(small); err != nil {
		t.Fatalf("a normal token: %v", err)
	}
	// A correctly signed token, only too large.
	big, _, err := ts.issueAccess(&User{ID: "alice", Claims: map[string]any{"pad": strings.Repeat("x", maxTokenSize)}}, s.ID, s.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if len(big) <= maxTokenSize {
		t.Fatalf("test token is only %d bytes", len(big))
	}
	_, err = ts.verifyAccess(big)
	if err == nil || !strings.Contains(err.Error(), "oversized") {
		t.Fatalf("a %d-byte token: %v, want refused as oversized", len(big), err)
	}
}

func TestRequestSizeLimitsEndToEnd(t *testing.T) {
	p := startCaddy(t, "", `token_auth /private/* {
		signing_key hs256 `+strings.Repeat("s", 32)+`
		store memory
	}
	respond "ok"`)

	// Body over 64 KiB: 413, Feathers-shaped.
	r := p.do("POST", "/authentication", `{"strategy":"local","username":"`+strings.Repeat("a", maxBodySize)+`"}`)
	if r.Status != 413 || r.str("name") != "PayloadTooLarge" {
		t.Fatalf("oversized body: %d %s", r.Status, r.Raw)
	}
	// An oversized bearer token, and a huge Authorization header: a plain
	// 401, never a server error.
	for _, h := range []string{"Bearer " + strings.Repeat("a", maxTokenSize+1), "Bearer " + strings.Repeat("a.", 6<<10)} {
		r = p.do("GET", "/private/x", nil, "Authorization", h)
		if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("%d-byte Authorization: %d %s", len(h), r.Status, r.Raw)
		}
	}
}

func TestHeaderSizeLimitEndToEnd(t *testing.T) {
	// Caddy's own limit (16 KiB by default, `servers { max_header_size }`)
	// answers 431 before the handler runs.
	p := startCaddy(t, "", `token_auth /private/* {
		signing_key hs256 `+strings.Repeat("s", 32)+`
		store memory
	}
	respond "ok"`)
	r := p.do("GET", "/private/x", nil, "Authorization", "Bearer "+strings.Repeat("a", 32<<10))
	if r.Status != 431 {
		t.Fatalf("32 KiB header under the default 16 KiB limit: %d %s", r.Status, r.Raw)
	}
	r = p.do("GET", "/private/x", nil, "Authorization", "Bearer "+strings.Repeat("a", 9<<10))
	if r.Status != 401 {
		t.Fatalf("9 KiB header: %d %s", r.Status, r.Raw)
	}
}

func TestUsersFileErrorsNameTheLine(t *testing.T) {
	good := testHash(t, "pw")
	for _, tc := range []struct{ name, file, want string }{
		{"json syntax", "{\n  \"users\": [\n    {\"id\": \"a\",, }\n  ]\n}", "line 3"},
		{"json wrong type", "{\n \"users\": [\n  {\"id\": \"a\",\n   \"roles\": \"admin\"}\n ]\n}", "line 4"},
		{"json unknown field", "{\n \"users\": [\n  {\"id\": \"a\", \"claims\": {\"pasword\": 1, \"x\": [{\"pasword\": 2}]},\n  \"pasword\": \"x\"}\n ]\n}", "line 4"},
		{"json unknown top field", "{\n \"users\": [],\n\n \"groups\": []\n}", "line 4"},
		{"json bad hash", "{\"users\": [\n {\"id\": \"a\", \"password\": \"" + good + "\"},\n {\"id\": \"b\",\n  \"password\": \"plain\"}\n]}", "user #2 (line 3)"},
		{"json reserved claim", "{\"users\": [\n\n {\"id\": \"a\", \"password\": \"" + good + "\", \"claims\": {\"sub\": \"x\"}}]}", "line 3"},
		{"htpasswd no colon", "a:" + good + "\n# comment\nbroken\n", "line 3"},
		{"htpasswd bad hash", "\n\nb:{SHA}abc\n", "line 3"},
		{"htpasswd line too long", "a:" + good + "\nb:" + strings.Repeat("x", 70<<10) + "\n", "line 2"},
		{"htpasswd empty id", "a:" + good + "\n:" + good + "\n", "line 2"},
	} {
		_, err := parseUsersFile([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}

	// Through the directory, the path is named too.
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("a:"+good+"\nbad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newUserDirectory(nil, path, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("users file error %v, want path and line", err)
	}
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	hash := testHash(t, "pw")
	for _, tc := range []struct{ name, body, want string }{
		{"unknown option", "realm a\n\tbogus 1", "Testfile:3"},
		{"missing argument", "realm", "Testfile:2"},
		{"bad duration", "realm a\n\naccess_ttl soon", "Testfile:4"},
		{"bad endpoint", "endpoint auth", "Testfile:2"},
		{"signing key args", "signing_key hs256", "Testfile:2"},
		{"user bad hash", "realm a\nuser bob plaintext", "Testfile:3"},
		{"user unknown option", "user bob " + hash + " {\n\tcolour blue\n}", "Testfile:3"},
		{"user reserved claim", "user bob " + hash + " {\n\temail b@x\n\tclaim sub x\n}", "Testfile:4"},
		{"store", "store floppy", "Testfile:2"},
		{"require", "require admin", "Testfile:2"},
		{"throttle", "\nthrottle 1 2", "Testfile:3"},
	} {
		ta := new(TokenAuth)
		err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + tc.body + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
