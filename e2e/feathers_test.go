package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// feathersSite is a site whose /api/* routes need a token and whose
// /api/whoami answers the identity the guard set, as a Feathers service.
func feathersSite(t *testing.T) string {
	return fmt.Sprintf(`
	token_auth /api/* {
		signing_key hs256 %s
		store memory
		user alice %s {
			email alice@example.com
			name Alice
		}
	}
	handle /api/whoami {
		header Content-Type application/json
		respond `+"`"+`{"id":"{http.auth.user.id}","sid":"{http.auth.user.sid}"}`+"`"+` 200
	}
`, e2eSecret, testenv.Hash(t, "wonderland"))
}

// TestFeathersClient runs tests/feathers/client.js, the real FeathersJS v5
// client (authentication-client + rest-client over fetch), through a whole
// session against a real Caddy: authenticate, reAuthenticate(true), a
// guarded service, a refresh in the seed's shape, logout, and refusal of
// the old tokens.
func TestFeathersClient(t *testing.T) {
	node := lookProgram(t, "test.d/setup-node.sh", "node")
	dir, err := filepath.Abs(filepath.Join("..", "tests", "feathers"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@feathersjs", "authentication-client")); err != nil {
		testenv.Need(t, "tests/feathers/node_modules is missing: run `npm ci` there (test.d/setup-node.sh does)")
	}
	p := startCaddy(t, "", feathersSite(t))

	cmd := exec.Command(node, "client.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL="+p.BaseURL, "EMAIL=alice@example.com", "PASSWORD=wonderland")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("feathers client: %v\n%s\ncaddy logs:\n%s", err, out, p.Logs())
	}
	if !strings.Contains(string(out), "ok: feathers client session complete") {
		t.Fatalf("feathers client did not finish:\n%s", out)
	}
	t.Logf("%s", out)
}
