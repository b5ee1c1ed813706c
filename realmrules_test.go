package tokenauth

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestCaddyfileRealmConflicts: two directives naming one realm must have
// the same store and the same users; otherwise adapting refuses, naming
// both lines. Different realms, or the same config twice, are fine.
func TestCaddyfileRealmConflicts(t *testing.T) {
	site := func(host, realm, inner string) string {
		return "http://" + host + " {\n\ttoken_auth /api/* {\n\t\trealm " + realm + "\n\t\tsigning_key hs256 " + testSecret + "\n\t\t" + inner + "\n\t}\n\trespond ok\n}\n"
	}
	const alice = "user alice $2a$04$abcdefghijklmnopqrstuuHrrMm4YdwRZ1mMDfLTbcmXQm5o7HH2G"
	for _, tc := range []struct {
		name, a, b string
		want       string // "" when the file is accepted
	}{
		{"different stores", "store memory\n\t\t" + alice, "store bolt /tmp/x.db\n\t\t" + alice, "different stores (memory, then bolt /tmp/x.db)"},
		{"different users", "store memory\n\t\t" + alice, "store memory\n\t\tusers_file /etc/users.json", "different users"},
		{"same config", "store memory\n\t\t" + alice, "store memory\n\t\t" + alice, ""},
		{"different max_sessions", "store memory\n\t\tmax_sessions 5\n\t\t" + alice, "store memory\n\t\tmax_sessions 6\n\t\t" + alice, "different max_sessions (5, then 6)"},
		{"max_sessions left out in one", "store memory\n\t\tmax_sessions 5\n\t\t" + alice, "store memory\n\t\t" + alice, "different max_sessions (5, then 100)"},
		{"same max_sessions", "store memory\n\t\tmax_sessions 5\n\t\t" + alice, "store memory\n\t\tmax_sessions 5\n\t\t" + alice, ""},
		{"different max_concurrent_hashes", "store memory\n\t\tmax_concurrent_hashes 2\n\t\t" + alice, "store memory\n\t\tmax_concurrent_hashes 3\n\t\t" + alice, "different max_concurrent_hashes (2, then 3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := site("a.example", "shared", tc.a)
			secondLine := strings.Count(first, "\n") + 2 // the second site's token_auth line
			input := first + site("b.example", "shared", tc.b) + site("c.example", "other", "store memory")
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `realm "shared"`) ||
				!strings.Contains(err.Error(), "Caddyfile:2") || !strings.Contains(err.Error(), fmt.Sprintf("Caddyfile:%d", secondLine)) {
				t.Fatalf("got %v, want an error naming realm, both lines and %q", err, tc.want)
			}
		})
	}
}

// TestProvisionRealmConflicts: the same rule for JSON configs, checked
// when the handlers of one config are provisioned; another config (a
// reload) may change a realm's store.
func TestProvisionRealmConflicts(t *testing.T) {
	dbPath := t.TempDir() + "/s.db"
	handler := func(store string) *TokenAuth {
		return &TokenAuth{
			SigningKey: &KeyConfig{Algorithm: "hs256", Key: testSecret},
			Store:      &StoreConfig{Backend: store, Path: dbPath},
			Realm:      "conflict-test",
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	a := handler("memory")
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Cleanup()
	if err := handler("memory").Provision(ctx); err != nil {
		t.Fatalf("the same store twice: %v", err)
	}
	if err := handler("bolt").Provision(ctx); err == nil || !strings.Contains(err.Error(), `realm "conflict-test"`) || !strings.Contains(err.Error(), "different stores") {
		t.Fatalf("another store in one config: %v", err)
	}
	cancel()

	reload, cancel2 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel2()
	b := handler("bolt")
	if err := b.Provision(reload); err != nil {
		t.Fatalf("another store in the next config: %v", err)
	}
	defer b.Cleanup()
}
