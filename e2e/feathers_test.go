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

// nodeTestClient is a Node.js script directory under tests/ with its
// pinned npm packages installed.
type nodeTestClient struct{ node, dir string }

// nodeClient finds node and tests/<name> with the package probe (a path
// under node_modules) installed by setup; without them the test fails
// under CI=true and skips elsewhere.
func nodeClient(t *testing.T, name, probe, setup string) nodeTestClient {
	t.Helper()
	node := lookProgram(t, "test.d/setup-node.sh", "node")
	dir, err := filepath.Abs(filepath.Join("..", "tests", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", probe)); err != nil {
		testenv.Need(t, fmt.Sprintf("tests/%s/node_modules is missing: run `npm ci` there (%s does)", name, setup))
	}
	return nodeTestClient{node: node, dir: dir}
}

// run runs script against p (BASE_URL) with env added; a failing script
// fails the test with its output and Caddy's logs.
func (c nodeTestClient) run(t *testing.T, p *caddyProc, script string, env ...string) []byte {
	t.Helper()
	cmd := exec.Command(c.node, script)
	cmd.Dir = c.dir
	cmd.Env = append(append(os.Environ(), "BASE_URL="+p.BaseURL), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s\ncaddy logs:\n%s", script, err, out, p.Logs())
	}
	return out
}

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
	client := nodeClient(t, "feathers", "@feathersjs/authentication-client", "test.d/setup-node.sh")
	p := startCaddy(t, "", feathersSite(t))
	out := client.run(t, p, "client.js", "EMAIL=alice@example.com", "PASSWORD=wonderland")
	if !strings.Contains(string(out), "ok: feathers client session complete") {
		t.Fatalf("feathers client did not finish:\n%s", out)
	}
	t.Logf("%s", out)
}
