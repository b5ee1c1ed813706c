package tokenauth

import (
	"fmt"
	"strings"
	"testing"
)

// TestDPoPInterop runs tests/dpop/client.mjs: proofs made by panva's
// `dpop` npm package (an independent RFC 9449 implementation, on Node's
// WebCrypto with non-extractable keys) for ES256, Ed25519 and RS256 are
// accepted at login, at a guarded route and at refresh, through a real
// Caddy. Without node or the package it skips locally and fails under CI.
func TestDPoPInterop(t *testing.T) {
	client := nodeClient(t, "dpop", "dpop/package.json", "test.d/setup-dpop.sh")
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
	out := client.run(t, p, "client.mjs", "USERNAME=alice", "PASSWORD=alice-pw")
	for _, alg := range []string{"ES256", "Ed25519", "RS256"} {
		if !strings.Contains(string(out), "ok: dpop interop "+alg) {
			t.Fatalf("the dpop client did not finish %s:\n%s", alg, out)
		}
	}
	t.Logf("%s", out)
}
