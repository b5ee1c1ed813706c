package tokenauth

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestStoreFailureIsNeverAnAuthError closes the bolt database underneath a
// working handler: every endpoint operation needing the store must then
// answer 5xx (clients keep their tokens), never 401-407 (clients drop them).
func TestStoreFailureIsNeverAnAuthError(t *testing.T) {
	ta := hs256Config("store-failure-test", User{ID: "alice", Password: testenv.Hash(t, "pw")})
	ta.Store = &StoreConfig{Backend: "bolt", Path: filepath.Join(t.TempDir(), "sessions.db")}
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
	// a hash that looks like bcrypt but is not one makes the comparer fail
	ta := hs256Config("server-fault-test", User{ID: "alice", Password: "$2a$04$broken"})
	provisionInProcess(t, ta)
	w := serve(t, ta, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"pw"}`)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"GeneralError"`) {
		t.Fatalf("got %d %s, want a 500 GeneralError", w.Code, w.Body)
	}
}
