package tokenauth

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDPoPInterop runs tests/dpop/client.mjs: proofs made by panva's
// `dpop` npm package (an independent RFC 9449 implementation, on Node's
// WebCrypto with non-extractable keys) for ES256, Ed25519 and RS256 are
// accepted at login, at a guarded route and at refresh, through a real
// Caddy. Without node or the package it skips locally and fails under CI.
func TestDPoPInterop(t *testing.T) {
	node := requireTool(t, "node")
	dir, err := filepath.Abs(filepath.Join("tests", "dpop"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "dpop", "package.json")); err != nil {
		missing(t, "tests/dpop/node_modules is missing: run `npm ci` there (test.d/setup-dpop.sh does)")
	}
	p := startCaddy(t, "", fmt.Sprintf(`
	token_auth /api/* {
		signing_key hs256 %s
		store memory
		user alice %s
	}
	handle /api/whoami {
		header Content-Type application/json
		respond `+"`"+`{"id":"{http.auth.user.id}","jkt":"{http.auth.user.cnf_jkt}"}`+"`"+` 200
	}
`, e2eSecret, testHash(t, "alice-pw")))

	cmd := exec.Command(node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL="+p.BaseURL, "USERNAME=alice", "PASSWORD=alice-pw")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpop client: %v\n%s\ncaddy logs:\n%s", err, out, p.Logs())
	}
	for _, alg := range []string{"ES256", "Ed25519", "RS256"} {
		if !strings.Contains(string(out), "ok: dpop interop "+alg) {
			t.Fatalf("the dpop client did not finish %s:\n%s", alg, out)
		}
	}
	t.Logf("%s", out)
}
