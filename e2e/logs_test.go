package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestNoSecretsInLogs runs a full session through a real Caddy logging at
// DEBUG, with the site's access log on, and searches everything it printed
// for tokens, token segments, passwords, hashes and the signing secret.
func TestNoSecretsInLogs(t *testing.T) {
	const (
		secret    = "log-test-signing-secret-0123456789abcdef"
		password  = "correct-horse-battery-staple"
		wrongPass = "Tr0ub4dor&3-wrong-guess"
	)
	hash := testenv.Hash(t, password)
	// As the README advises: at DEBUG level Caddy itself logs its whole
	// config, so the secret comes from the environment and the hashes from
	// a users file, never inline.
	dir := t.TempDir()
	users := `{"users":[{"id":"alice","email":"alice@example.com","roles":["admin"],"password":"` + hash + `"}]}`
	if err := os.WriteFile(filepath.Join(dir, "users.json"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddy(t, "", `log
	token_auth /private/* {
		signing_key hs256 {env.LOG_TEST_SECRET}
		store memory
		reuse_grace 0
		users_file {DIR}/users.json
	}
	respond "ok {http.auth.user.id}"`, caddyOptions{Dir: dir, Env: []string{"LOG_TEST_SECRET=" + secret}})

	var secrets []string
	remember := func(tokens ...string) {
		for _, tok := range tokens {
			if tok == "" {
				t.Fatal("expected a token")
			}
			secrets = append(secrets, tok)
			for _, seg := range strings.Split(tok, ".") {
				secrets = append(secrets, seg)
			}
		}
	}

	// failures: wrong password, unknown user, missing password, garbage token
	for _, body := range []map[string]string{
		{"strategy": "local", "username": "alice", "password": wrongPass},
		{"strategy": "local", "email": "nobody@example.com", "password": wrongPass},
		{"strategy": "local", "username": "alice"},
	} {
		if r := p.do("POST", "/authentication", body); r.Status != 401 {
			t.Fatalf("failed login: %d %s", r.Status, r.Raw)
		}
	}
	// login, guarded request, re-authentication
	login := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": password})
	if login.Status != 201 {
		t.Fatalf("login: %d %s", login.Status, login.Raw)
	}
	access, refresh := login.str("accessToken"), login.str("refreshToken")
	remember(access, refresh)
	if r := p.do("GET", "/private/x", nil, "Authorization", "Bearer "+access); r.Status != 200 {
		t.Fatalf("guarded: %d %s", r.Status, r.Raw)
	}
	if r := p.do("POST", "/authentication", map[string]string{"strategy": "jwt", "accessToken": access}); r.Status != 201 {
		t.Fatalf("jwt strategy: %d %s", r.Status, r.Raw)
	}
	// refresh, then reuse of the spent refresh token (revokes the session)
	rot := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": refresh})
	if rot.Status != 201 {
		t.Fatalf("refresh: %d %s", rot.Status, rot.Raw)
	}
	remember(rot.str("accessToken"), rot.str("refreshToken"))
	time.Sleep(10 * time.Millisecond)
	if r := p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": refresh}); r.Status != 401 {
		t.Fatalf("reuse: %d %s", r.Status, r.Raw)
	}
	// refused tokens: revoked, tampered, garbage
	if r := p.do("GET", "/private/x", nil, "Authorization", "Bearer "+rot.str("accessToken")); r.Status != 401 {
		t.Fatalf("revoked access token: %d", r.Status)
	}
	tampered := access[:len(access)-2] + "xx"
	remember(tampered)
	p.do("GET", "/private/x", nil, "Authorization", "Bearer "+tampered)
	p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": tampered})
	// a new session, logged out
	again := p.do("POST", "/authentication", map[string]string{"strategy": "local", "email": "alice@example.com", "password": password})
	remember(again.str("accessToken"), again.str("refreshToken"))
	if r := p.do("DELETE", "/authentication", nil, "Authorization", "Bearer "+again.str("accessToken")); r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	// a malformed body that carries a password
	p.do("POST", "/authentication", `{"strategy":"local","username":"alice","password":"`+wrongPass+`",}`)

	logs := p.Logs()
	if !strings.Contains(logs, `"msg":"login failed"`) || !strings.Contains(logs, "refresh token reused") || !strings.Contains(logs, `"msg":"logout"`) {
		t.Fatalf("the session was not logged as expected:\n%s", logs)
	}
	if !strings.Contains(logs, `"logger":"http.log.access`) {
		t.Fatalf("no access log lines:\n%s", logs)
	}
	secrets = append(secrets, password, wrongPass, hash, secret)
	// the bcrypt hash's salt and digest, on their own
	secrets = append(secrets, hash[7:29], hash[29:])
	for _, s := range secrets {
		if len(s) < 8 {
			continue // a short segment could match by chance
		}
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain a secret %q", s)
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, s) {
					t.Log(l[:min(len(l), 300)])
				}
			}
		}
	}
}
