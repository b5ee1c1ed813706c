package tokenauth

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

func TestProvisionAndValidateErrors(t *testing.T) {
	t.Setenv("TOKEN_AUTH_TEST_SHORT", "only-twenty-bytes-xx")
	h := testenv.Hash(t, "pw")
	key := &KeyConfig{Algorithm: "hs256", Key: testSecret}
	mem := &StoreConfig{Backend: "memory"}
	d := func(x time.Duration) caddy.Duration { return caddy.Duration(x) }
	for _, c := range []struct {
		name string
		ta   TokenAuth
		want string
	}{
		{"short secret", TokenAuth{SigningKey: &KeyConfig{Algorithm: "hs256", Key: "short"}, Store: mem}, "hs256 secret is 5 bytes; at least 32 are required"},
		{"short secret from env", TokenAuth{SigningKey: &KeyConfig{Algorithm: "hs256", Key: "{env.TOKEN_AUTH_TEST_SHORT}"}, Store: mem}, "hs256 secret (from {env.TOKEN_AUTH_TEST_SHORT}) is 20 bytes"},
		// a placeholder that resolves to nothing is named as such, not "0 bytes"
		{"unset env secret", TokenAuth{SigningKey: &KeyConfig{Algorithm: "hs256", Key: "{env.TOKEN_AUTH_TEST_UNSET}"}, Store: mem}, "signing_key: the hs256 key {env.TOKEN_AUTH_TEST_UNSET} is empty or unset"},
		{"unset env verify key", TokenAuth{SigningKey: key, VerifyKeys: []KeyConfig{{KID: "old", Algorithm: "ed25519", Key: "{env.TOKEN_AUTH_TEST_UNSET}"}}, Store: mem}, "verify_key old: the ed25519 key {env.TOKEN_AUTH_TEST_UNSET} is empty or unset"},
		{"unset env users file", TokenAuth{SigningKey: key, UsersFile: "{env.TOKEN_AUTH_TEST_UNSET}", Store: mem}, "the users_file {env.TOKEN_AUTH_TEST_UNSET} is empty or unset"},
		{"unknown algorithm", TokenAuth{SigningKey: &KeyConfig{Algorithm: "hs512", Key: testSecret}, Store: mem}, `unsupported algorithm "hs512"`},
		{"no algorithm", TokenAuth{SigningKey: &KeyConfig{Key: testSecret}, Store: mem}, "algorithm is required"},
		{"verify key too short", TokenAuth{SigningKey: key, VerifyKeys: []KeyConfig{{KID: "old", Algorithm: "hs256", Key: "x"}}, Store: mem}, "verify_key old: hs256 secret is 1 bytes"},
		{"verify key id taken", TokenAuth{SigningKey: key, VerifyKeys: []KeyConfig{{KID: "k", Algorithm: "hs256", Key: testSecret + "1"}, {KID: "k", Algorithm: "hs256", Key: testSecret + "2"}}, Store: mem}, "verify_key k: kid already used"},
		{"missing users file", TokenAuth{SigningKey: key, UsersFile: "/nonexistent/users.json", Store: mem}, "users file"},
		{"plaintext password", TokenAuth{SigningKey: key, Users: []User{{ID: "a", Password: "secret"}}, Store: mem}, "password must be a bcrypt or argon2id hash"},
		{"duplicate user", TokenAuth{SigningKey: key, Users: []User{{ID: "a", Password: h}, {ID: "a", Password: h}}, Store: mem}, `user "a" is defined twice`},
		{"unknown store", TokenAuth{SigningKey: key, Store: &StoreConfig{Backend: "etcd"}}, `unknown store backend "etcd"`},
		{"access_ttl over session_ttl", TokenAuth{SigningKey: key, Store: mem, AccessTTL: d(2 * time.Hour), SessionTTL: d(time.Hour)}, "access_ttl (2h0m0s) must not exceed idle_ttl or session_ttl"},
		{"access_ttl over idle_ttl", TokenAuth{SigningKey: key, Store: mem, AccessTTL: d(2 * time.Hour), IdleTTL: d(time.Hour)}, "must not exceed idle_ttl"},
		{"negative ttl", TokenAuth{SigningKey: key, Store: mem, SessionTTL: d(-time.Hour)}, "session_ttl must be positive"},
		{"negative grace", TokenAuth{SigningKey: key, Store: mem, ReuseGrace: func() *caddy.Duration { g := d(-time.Second); return &g }()}, "reuse_grace must not be negative"},
		{"brace in realm", TokenAuth{Realm: "}shop", SigningKey: key, Store: mem}, `realm "}shop": a realm name must not contain { or }`},
		{"relative endpoint", TokenAuth{SigningKey: key, Store: mem, Endpoint: "auth"}, "endpoint must be a path starting with /"},
		{"require mfa without a second factor", TokenAuth{SigningKey: key, Store: mem, RequireMFA: true}, "require mfa needs a second factor users can add: mfa totp or passkeys"},
		{"short totp key", TokenAuth{SigningKey: key, Store: mem, MFA: &MFAConfig{TOTP: &TOTPConfig{EncryptionKey: "c2hvcnQ="}}}, "mfa totp: encryption_key must be 32 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			ta := c.ta
			if ta.Realm == "" {
				ta.Realm = "provision-errors-" + c.name
			}
			err := ta.Provision(ctx)
			if err == nil {
				err = ta.Validate()
				_ = ta.Cleanup()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatal("an error message shows the secret")
			}
		})
	}
}

func TestProvisionDefaults(t *testing.T) {
	ta := hs256Config("")
	ta.Endpoint = "/auth/"
	provisionInProcess(t, ta)
	if ta.Realm != "default" || ta.Endpoint != "/auth" || ta.Issuer != "caddy-token-auth" || ta.Audience != "default" ||
		time.Duration(ta.AccessTTL) != 15*time.Minute || time.Duration(ta.SessionTTL) != 720*time.Hour ||
		time.Duration(ta.IdleTTL) != 168*time.Hour || time.Duration(*ta.ReuseGrace) != 10*time.Second {
		t.Fatalf("defaults: %+v", ta)
	}
	// the default bolt file is under Caddy's data directory
	if p := (StoreConfig{}).resolved().Path; p != filepath.Join(caddy.AppDataDir(), "token_auth", "sessions.db") {
		t.Fatalf("default bolt path %q", p)
	}
}

func loginInProcess(t *testing.T, ta *TokenAuth, user, pw string) (access, refresh string) {
	t.Helper()
	w := serve(t, ta, "POST", "/authentication", `{"strategy":"local","username":"`+user+`","password":"`+pw+`"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("login %s: %d %s", user, w.Code, w.Body)
	}
	var pair struct{ AccessToken, RefreshToken string }
	if err := json.Unmarshal(w.Body.Bytes(), &pair); err != nil {
		t.Fatal(err)
	}
	return pair.AccessToken, pair.RefreshToken
}

func TestRequireRole(t *testing.T) {
	ta := hs256Config("require-role-test",
		User{ID: "alice", Password: testenv.Hash(t, "a"), Roles: []string{"viewer", "ops"}},
		User{ID: "bob", Password: testenv.Hash(t, "b"), Roles: []string{"viewer"}},
		User{ID: "carol", Password: testenv.Hash(t, "c")})
	ta.RequireRoles = []string{"admin", "ops"}
	provisionInProcess(t, ta)
	for user, want := range map[string]int{"alice": http.StatusTeapot, "bob": http.StatusForbidden, "carol": http.StatusForbidden} {
		at, _ := loginInProcess(t, ta, user, user[:1])
		w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+at)
		if w.Code != want {
			t.Fatalf("%s: %d %s, want %d", user, w.Code, w.Body, want)
		}
		if want == http.StatusForbidden && !strings.Contains(w.Body.String(), `"name":"Forbidden"`) {
			t.Fatalf("403 is not Feathers-shaped: %s", w.Body)
		}
	}
	// the endpoint itself needs no role
	if w := serve(t, ta, "POST", "/authentication", `{"strategy":"local","username":"bob","password":"b"}`); w.Code != http.StatusCreated {
		t.Fatalf("login of a user without the role: %d", w.Code)
	}
}

// TestSessionLifetimes moves the handler's clock: a session idle past
// idle_ttl, or past session_ttl, refreshes no more.
func TestSessionLifetimes(t *testing.T) {
	ta := hs256Config("lifetimes-test", User{ID: "alice", Password: testenv.Hash(t, "a")})
	ta.AccessTTL, ta.IdleTTL, ta.SessionTTL = caddy.Duration(time.Minute), caddy.Duration(time.Hour), caddy.Duration(3*time.Hour)
	provisionInProcess(t, ta)
	start := time.Now()
	setClock := func(d time.Duration) {
		now := func() time.Time { return start.Add(d) }
		ta.now, ta.tokens.now = now, now
	}
	refresh := func(rt string) (int, string) {
		w := serve(t, ta, "POST", "/authentication", `{"action":"refresh","refresh_token":"`+rt+`"}`)
		var pair struct{ RefreshToken string }
		_ = json.Unmarshal(w.Body.Bytes(), &pair)
		return w.Code, pair.RefreshToken
	}

	setClock(0)
	_, rt := loginInProcess(t, ta, "alice", "a")
	// refreshing every 50 minutes keeps the session alive past idle_ttl...
	for i := 1; i <= 3; i++ {
		setClock(time.Duration(i) * 50 * time.Minute)
		code, next := refresh(rt)
		if code != http.StatusCreated {
			t.Fatalf("refresh %d: %d", i, code)
		}
		rt = next
	}
	// ... but not past session_ttl (3h)
	setClock(3*time.Hour + time.Second)
	if code, _ := refresh(rt); code != http.StatusUnauthorized {
		t.Fatalf("refresh past session_ttl: %d", code)
	}

	// idle: a second session left alone for more than idle_ttl
	setClock(0)
	_, rt2 := loginInProcess(t, ta, "alice", "a")
	setClock(time.Hour + time.Second)
	if code, _ := refresh(rt2); code != http.StatusUnauthorized {
		t.Fatalf("refresh after idle_ttl: %d", code)
	}
	// the access token never outlives the session
	setClock(0)
	at, _ := loginInProcess(t, ta, "alice", "a")
	setClock(2 * time.Minute)
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+at); w.Code != http.StatusUnauthorized {
		t.Fatalf("expired access token: %d", w.Code)
	}
}
