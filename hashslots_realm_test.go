package tokenauth

import (
	"context"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestMaxConcurrentHashesPerRealm: two directives of one realm share
// max_concurrent_hashes: with the one slot taken by a login at the first,
// a login at the second is answered 503 without hashing. A directive of
// another realm has slots of its own, and the slots go with the last
// handler using them.
func TestMaxConcurrentHashesPerRealm(t *testing.T) {
	alice := User{ID: "alice", Password: testenv.Hash(t, "a")}
	handler := func(realm string) *TokenAuth {
		ta := hs256Config(realm, alice)
		ta.MaxConcurrentHashes = 1
		return ta
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	provision := func(ta *TokenAuth) {
		if err := ta.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	first, second, other := handler("hash-slots-realm"), handler("hash-slots-realm"), handler("hash-slots-other")
	provision(first)
	provision(second)
	provision(other)

	if !first.hashSlots.acquire(context.Background()) { // a login hashing at the first directive
		t.Fatal("no free slot")
	}
	w := serve(t, second, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"a"}`)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("login at the realm's second directive while its one slot is taken: %d, want 503", w.Code)
	}
	if n := second.users.compares.Load(); n != 0 {
		t.Fatalf("%d passwords hashed beyond the realm's bound", n)
	}
	loginInProcess(t, other, "alice", "a") // another realm is not held up
	first.hashSlots.release()
	loginInProcess(t, second, "alice", "a")

	for _, ta := range []*TokenAuth{first, second, other} {
		if err := ta.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	for _, realm := range []string{"hash-slots-realm", "hash-slots-other"} {
		if _, loaded := hashSlotPool.References(hashSlotKey(realm, 1)); loaded {
			t.Fatalf("realm %s: hash slots kept after the last handler's cleanup", realm)
		}
	}
}
