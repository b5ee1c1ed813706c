package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// recipeSiteBody returns the inside of the (last) site block of a recipe,
// with the replacements applied, for startCaddy.
func recipeSiteBody(t *testing.T, name string, replace ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "recipes", name+".Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	open := strings.LastIndex(text, ".example.com {")
	end := strings.LastIndex(text, "}")
	if open < 0 || end < open {
		t.Fatalf("no site block in recipe %s", name)
	}
	body := text[open+len(".example.com {") : end]
	return strings.NewReplacer(replace...).Replace(body)
}

// TestRecipeForwardIdentity runs the forward-identity recipe as written
// (only paths and the upstream address swapped): the upstream receives
// the user's identity in headers, a client cannot forge them, and users
// without the role never reach it.
func TestRecipeForwardIdentity(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		_, _ = w.Write([]byte("from upstream"))
	}))
	defer upstream.Close()

	dir := t.TempDir()
	users := `{"users":[
		{"id":"alice","password":"` + testenv.Hash(t, "pw") + `","email":"alice@example.com","name":"Alice","roles":["staff"],"claims":{"team":"blue"}},
		{"id":"bob","password":"` + testenv.Hash(t, "pw") + `"}
	]}`
	if err := os.WriteFile(filepath.Join(dir, "users.json"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	body := recipeSiteBody(t, "forward-identity",
		"/etc/caddy/users.json", "{DIR}/users.json",
		"127.0.0.1:8080", strings.TrimPrefix(upstream.URL, "http://"))
	p := startCaddy(t, "", body, caddyOptions{Dir: dir, Env: []string{"TOKEN_AUTH_SECRET=" + e2eSecret}})
	login := func(user string) string {
		r := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": user, "password": "pw"})
		if r.Status != 201 {
			t.Fatalf("login %s: %d %s", user, r.Status, r.Raw)
		}
		return r.str("accessToken")
	}

	r := p.do("GET", "/page", nil, "Authorization", "Bearer "+login("alice"), "X-Auth-User", "mallory", "X-Auth-Roles", "admin")
	if r.Status != 200 || r.Raw != "from upstream" {
		t.Fatalf("alice: %d %s", r.Status, r.Raw)
	}
	if r := p.do("GET", "/page", nil, "Authorization", "Bearer "+login("bob")); r.Status != 403 {
		t.Fatalf("bob without role: %d %s", r.Status, r.Raw)
	}
	if r := p.do("GET", "/page", nil, "X-Auth-User", "alice"); r.Status != 401 {
		t.Fatalf("no token: %d %s", r.Status, r.Raw)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d requests, want only alice's", len(seen))
	}
	h := seen[0]
	for k, want := range map[string]string{
		"X-Auth-User": "alice", "X-Auth-Email": "alice@example.com", "X-Auth-Name": "Alice",
		"X-Auth-Roles": "staff", "X-Auth-Team": "blue",
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	if h.Get("X-Auth-Session") == "" {
		t.Error("upstream got no X-Auth-Session")
	}
}

// TestRecipesAdapt runs `caddy adapt` on every docs/recipes/*.Caddyfile
// with the real binary: each recipe of the README must be valid Caddyfile
// that yields a token_auth handler.
func TestRecipesAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "docs", "recipes", "*.Caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recipes: %v", err)
	}
	bin := caddyBinary(t)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".Caddyfile"), func(t *testing.T) {
			cmd := exec.Command(bin, "adapt", "--config", f, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("caddy adapt %s: %v\n%s", f, err, stderr)
			}
			var cfg map[string]any
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatalf("adapted config is not JSON: %v", err)
			}
			if !strings.Contains(string(out), `"handler":"token_auth"`) {
				t.Fatalf("no token_auth handler in the adapted config:\n%s", out)
			}
		})
	}
}
