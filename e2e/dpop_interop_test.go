package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestDPoPInterop runs tests/dpop/client.mjs: proofs made by panva's
// `dpop` npm package (an independent RFC 9449 implementation, on Node's
// WebCrypto with non-extractable keys) for ES256, Ed25519 and RS256 are
// accepted at login, at a guarded route and at refresh, through a real
// Caddy. Without node or the package it skips locally and fails under CI.
func TestDPoPInterop(t *testing.T) {
	client := nodeClient(t, "dpop", "dpop/package.json", "test.d/setup-dpop.sh")
	p := startCaddy(t, "", dpopInteropSite(t))
	out := client.run(t, p, "client.mjs", "USERNAME=alice", "PASSWORD=alice-pw")
	for _, alg := range []string{"ES256", "Ed25519", "RS256"} {
		if !strings.Contains(string(out), "ok: dpop interop "+alg) {
			t.Fatalf("the dpop client did not finish %s:\n%s", alg, out)
		}
	}
	t.Logf("%s", out)
}

// TestDPoPFeathersHook runs tests/dpop/feathers.mjs: the FeathersJS v5
// client with the DPoP hook docs/dpop.md shows (proofs by the dpop
// package) signs in bound, calls a guarded service, re-authenticates,
// refreshes and logs out.
func TestDPoPFeathersHook(t *testing.T) {
	client := nodeClient(t, "dpop", "@feathersjs/authentication-client", "test.d/setup-dpop.sh")
	p := startCaddy(t, "", dpopInteropSite(t))
	out := client.run(t, p, "feathers.mjs", "USERNAME=alice", "PASSWORD=alice-pw")
	if !strings.Contains(string(out), "ok: feathers dpop hook") {
		t.Fatalf("the feathers client did not finish:\n%s", out)
	}
}

// dpopInteropSite guards /api/* and answers /api/whoami with the id and
// the binding as JSON, as a Feathers service.
func dpopInteropSite(t *testing.T) string {
	return fmt.Sprintf(`
	token_auth /api/* {
		signing_key hs256 %s
		store memory
		user alice %s
	}
	handle /api/whoami {
		header Content-Type application/json
		respond `+"`"+`{"id":"{http.auth.user.id}","jkt":"{http.auth.user.cnf_jkt}"}`+"`"+` 200
	}
`, e2eSecret, testenv.Hash(t, "alice-pw"))
}
