package tokenauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func poolSize(p *caddy.UsagePool) int {
	n := 0
	p.Range(func(_, _ any) bool { n++; return true })
	return n
}

// TestKeyCachesReleaseUnusedKeys: many reloads, each with a secret and a
// key of its own, leave the HMAC and parsed-key caches as they were: an
// entry goes with the last handler using it. While two configs overlap
// (a reload), a key both use is one entry, parsed once; a config that
// fails to provision gives its keys back too.
func TestKeyCachesReleaseUnusedKeys(t *testing.T) {
	hmacBefore, parsedBefore := poolSize(hmacPools), poolSize(parsedKeys)
	handler := func(i int) *TokenAuth {
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ta := hs256Config(fmt.Sprintf("key-cache-%d", i))
		ta.SigningKey.Key = fmt.Sprintf("%s-%06d", testSecret, i)
		ta.VerifyKeys = []KeyConfig{{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}}
		return ta
	}
	provision := func(ta *TokenAuth) func() {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := ta.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := ta.Cleanup(); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}
	for i := 0; i < 50; i++ {
		provision(handler(i))()
	}
	if h, p := poolSize(hmacPools), poolSize(parsedKeys); h != hmacBefore || p != parsedBefore {
		t.Fatalf("after 50 configs came and went: %d HMAC pools, %d parsed keys; want %d and %d", h, p, hmacBefore, parsedBefore)
	}

	// a reload keeping the keys: both configs share the entries
	old := handler(1000)
	cleanupOld := provision(old)
	reloaded := *old
	reloaded.VerifyKeys = append([]KeyConfig(nil), old.VerifyKeys...)
	cleanupNew := provision(&reloaded)
	if h, p := poolSize(hmacPools), poolSize(parsedKeys); h != hmacBefore+1 || p != parsedBefore+1 {
		t.Fatalf("two configs with one secret and one key: %d HMAC pools, %d parsed keys", h-hmacBefore, p-parsedBefore)
	}
	cleanupOld()
	if h, p := poolSize(hmacPools), poolSize(parsedKeys); h != hmacBefore+1 || p != parsedBefore+1 {
		t.Fatal("the keys of the running config left the caches with the old config")
	}
	if reloaded.tokens.keys.signer.mac == nil {
		t.Fatal("the HS256 key has no HMAC states")
	}
	cleanupNew()

	// a config refused after its signing key loaded gives it back
	bad := handler(2000)
	bad.VerifyKeys = append(bad.VerifyKeys, KeyConfig{Algorithm: "ed25519", Key: "/nonexistent/key.pem"})
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := bad.Provision(ctx); err == nil {
		t.Fatal("a missing verify key file was accepted")
	}
	_ = bad.Cleanup() // as Caddy does after a failed Provision
	if h, p := poolSize(hmacPools), poolSize(parsedKeys); h != hmacBefore || p != parsedBefore {
		t.Fatalf("a refused config kept %d HMAC pools and %d parsed keys", h-hmacBefore, p-parsedBefore)
	}
}
