package tokenauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// provisionInProcess provisions a handler as Caddy would, for tests that
// drive ServeHTTP directly.
func provisionInProcess(t *testing.T, ta *TokenAuth) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := ta.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ta.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ta.Cleanup() })
}

// serve drives ServeHTTP with a request as Caddy's server would prepare it.
func serve(t *testing.T, ta *TokenAuth, method, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := ta.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return w
}

// TestStoreFailureIsNeverAnAuthError closes the bolt database underneath a
// working handler: every endpoint operation needing the store must then
// answer 5xx (clients keep their tokens), never 401-407 (clients drop them).
func TestStoreFailureIsNeverAnAuthError(t *testing.T) {
	ta := &TokenAuth{
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: e2eSecret},
		Users:      []User{{ID: "alice", Password: testHash(t, "pw")}},
		Store:      &StoreConfig{Backend: "bolt", Path: filepath.Join(t.TempDir(), "sessions.db")},
		Realm:      "store-failure-test",
	}
	provisionInProcess(t, ta)

	login := serve(t, ta, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"pw"}`)
	if login.Code != http.StatusCreated {
		t.Fatalf("login with a working store: %d %s", login.Code, login.Body)
	}
	var pair struct{ AccessToken, RefreshToken string }
	if err := json.Unmarshal(login.Body.Bytes(), &pair); err != nil {
		t.Fatal(err)
	}

	// the database goes away underneath the handler
	if err := ta.realm.store.(*boltStore).db.Close(); err != nil {
		t.Fatal(err)
	}

	for name, req := range map[string][3]string{
		"login":         {"POST", "/authentication", `{"strategy":"local","username":"alice","password":"pw"}`},
		"refresh":       {"POST", "/authentication", `{"action":"refresh","refresh_token":"` + pair.RefreshToken + `"}`},
		"logout":        {"DELETE", "/authentication", ""},
		"global logout": {"DELETE", "/authentication?scope=global", ""},
	} {
		t.Run(name, func(t *testing.T) {
			w := serve(t, ta, req[0], req[1], req[2], "Authorization", "Bearer "+pair.AccessToken)
			if w.Code != http.StatusServiceUnavailable {
				t.Fatalf("got %d, want 503: %s", w.Code, w.Body)
			}
			if w.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			var e apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Name != "Unavailable" || e.Code != 503 {
				t.Fatalf("not a Feathers Unavailable error: %s", w.Body)
			}
		})
	}

	// the guard needs no store round trip: valid tokens still pass
	if w := serve(t, ta, "GET", "/private", "", "Authorization", "Bearer "+pair.AccessToken); w.Code != http.StatusTeapot {
		t.Fatalf("guard with the store down: %d %s", w.Code, w.Body)
	}
}

// TestServerFaultIsAnswered500 checks the other branch of answerError: a
// fault that is not the store's is a 500, still never 401-407.
func TestServerFaultIsAnswered500(t *testing.T) {
	ta := &TokenAuth{
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: e2eSecret},
		// a hash that looks like bcrypt but is not one makes the comparer fail
		Users: []User{{ID: "alice", Password: "$2a$04$broken"}},
		Store: &StoreConfig{Backend: "memory"},
		Realm: "server-fault-test",
	}
	provisionInProcess(t, ta)
	w := serve(t, ta, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"pw"}`)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"GeneralError"`) {
		t.Fatalf("got %d %s, want a 500 GeneralError", w.Code, w.Body)
	}
}
