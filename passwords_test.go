package tokenauth

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// argon2idHash makes a cheap argon2id hash (of a random password) in
// `caddy hash-password` format.
func argon2idHash(t *testing.T) string {
	t.Helper()
	// Caddy's Argon2idHash takes its parameters from a parsed hash only;
	// build one with small parameters and let makeDummyHash hash with them.
	like := "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43)
	h, err := makeDummyHash(like)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestDummyHashMatchesUsersCost(t *testing.T) {
	list, err := newUserList([]User{{ID: "a", Password: testenv.Hash(t, "pw")}, {ID: "b", Password: testenv.Hash(t, "pw2")}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost(list.fake); err != nil || c != bcrypt.MinCost {
		t.Fatalf("dummy hash cost %d (%v), the users' is %d", c, err, bcrypt.MinCost)
	}
	if ok, _ := list.comparer.Compare(list.fake, []byte("")); ok {
		t.Fatal("the dummy hash matches the empty password")
	}

	// The majority cost wins; with the default cost the stock fake is used.
	h14 := string(caddyauth.BcryptHash{}.FakeHash())
	list, _ = newUserList([]User{{ID: "a", Password: h14}, {ID: "b", Password: h14}, {ID: "c", Password: testenv.Hash(t, "x")}})
	if string(list.fake) != h14 {
		t.Fatalf("dummy hash %s, want caddyauth's cost-14 fake hash", list.fake)
	}

	// argon2id: the same parameters, salt and key lengths.
	ah := argon2idHash(t)
	list, _ = newUserList([]User{{ID: "a", Password: ah}})
	if hashCost(string(list.fake)) != hashCost(ah) || hashCost(ah) != "argon2id:m=64,t=1,p=1,salt=16,key=32" {
		t.Fatalf("argon2id dummy %s, user %s", list.fake, ah)
	}
	if _, ok := list.comparer.(caddyauth.Argon2idHash); !ok {
		t.Fatalf("argon2id users checked with %T", list.comparer)
	}
	if ok, err := list.comparer.Compare(list.fake, []byte("pw")); ok || err != nil {
		t.Fatalf("argon2id dummy compare: %v %v", ok, err)
	}

	// No users at all: caddyauth's bcrypt fake hash.
	list, _ = newUserList(nil)
	if string(list.fake) != h14 {
		t.Fatalf("no users: %s", list.fake)
	}
}

func TestEveryLoginFailureCostsOneHash(t *testing.T) {
	d, err := newUserDirectory([]User{{ID: "alice", Email: "alice@example.com", Password: testenv.Hash(t, "pw")}}, "", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, login, password string
		isEmail               bool
	}{
		{"wrong password", "alice", "nope", false},
		{"unknown user", "mallory", "nope", false},
		{"unknown email", "mallory@example.com", "nope", true},
		{"missing password", "alice", "", false},
		{"missing login", "", "nope", false},
		{"missing both", "", "", false},
	} {
		before := d.compares.Load()
		u, err := d.authenticate(tc.login, tc.password, tc.isEmail)
		if u != nil || err != nil {
			t.Errorf("%s: %v %v", tc.name, u, err)
		}
		if n := d.compares.Load() - before; n != 1 {
			t.Errorf("%s: %d hash verifications, want 1", tc.name, n)
		}
	}
}
