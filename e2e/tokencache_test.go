package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestTokenCacheLogoutRefusesCachedToken runs the whole path in a real
// Caddy: a token accepted (and cached) by the guard is refused right after
// its session logs out.
func TestTokenCacheLogoutRefusesCachedToken(t *testing.T) {
	hash := testenv.Hash(t, "pw")
	p := startCaddy(t, "", fmt.Sprintf(`
	token_auth /private* {
		signing_key hs256 %s
		store memory
		token_cache 100
		user alice %s
	}
	respond "ok {http.auth.user.id}"
`, e2eSecret, hash))
	login := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "pw"})
	tok := login.str("accessToken")
	if login.Status != http.StatusCreated || tok == "" {
		t.Fatalf("login: %d %s", login.Status, login.Raw)
	}
	for i := 0; i < 3; i++ {
		if r := p.do("GET", "/private", nil, "Authorization", "Bearer "+tok); r.Status != 200 || r.Raw != "ok alice" {
			t.Fatalf("guarded request %d: %d %q", i, r.Status, r.Raw)
		}
	}
	if r := p.do("DELETE", "/authentication", nil, "Authorization", "Bearer "+tok); r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	if r := p.do("GET", "/private", nil, "Authorization", "Bearer "+tok); r.Status != http.StatusUnauthorized {
		t.Fatalf("cached token after logout: %d %q", r.Status, r.Raw)
	}
	if strings.Count(p.Logs(), `"/private"`) > 0 {
		t.Fatalf("a log line names accepted guarded requests:\n%s", p.Logs())
	}
}
