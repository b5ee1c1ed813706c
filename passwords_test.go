package tokenauth

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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

// TestMixedHashCostsWarnedOnce: users of one realm hashed with different
// algorithms or costs are a warning at load (what it reveals, how to fix
// it, the counts and the minority's ids, at most a few), logged once: not
// again for a second directive or a reload that sees the same mix, again
// when the mix changes.
func TestMixedHashCostsWarnedOnce(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	logger := zap.New(core)
	cost := func(c int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), c)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	c4, c5 := cost(4), cost(5)
	file := func(lines ...string) string { return strings.Join(lines, "\n") + "\n" }
	mixed := file("alice:"+c4, "bob:"+c4, "carol:"+c4, "dave:"+c5, "erin:"+testArgon2idHash(t, "pw"))
	path := writeTemp(t, mixed)
	dir, err := newRealmUserDirectory("mixed-costs", nil, path, logger)
	if err != nil {
		t.Fatal(err)
	}
	warnings := func() (out []observer.LoggedEntry) {
		for _, e := range logs.TakeAll() {
			if strings.Contains(e.Message, "different algorithms or costs") {
				out = append(out, e)
			}
		}
		return out
	}
	got := warnings()
	if len(got) != 1 {
		t.Fatalf("%d warnings for a mixed realm, want 1: %v", len(got), logs.All())
	}
	msg, fields := got[0].Message, got[0].ContextMap()
	for _, want := range []string{"tell which accounts exist", "dummy hash of the most common cost", "caddy token-auth-users update <id> --password", "rehash"} {
		if !strings.Contains(msg, want) {
			t.Errorf("warning does not say %q: %s", want, msg)
		}
	}
	counts := fmt.Sprint(fields["hash_costs"])
	if fields["realm"] != "mixed-costs" || fields["common_cost"] != "bcrypt:4" || fields["other_cost_users"] != int64(2) ||
		fmt.Sprint(fields["other_cost_user_ids"]) != "[dave erin]" || !strings.Contains(counts, "bcrypt:4:3") ||
		!strings.Contains(counts, "bcrypt:5:1") || !strings.Contains(counts, "argon2id:m=1024,t=1,p=1,salt=16,key=32:1") {
		t.Errorf("warning fields: %v", fields)
	}

	// a second directive of the realm (or a config reload) with the same users
	if _, err := newRealmUserDirectory("mixed-costs", nil, path, logger); err != nil {
		t.Fatal(err)
	}
	// the users file rewritten with the same mix
	reload := func(data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		mod := time.Now().Add(time.Duration(len(data)) * time.Second)
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
		dir.mu.Lock()
		dir.checked = time.Time{}
		dir.mu.Unlock()
		dir.users()
	}
	reload("# rewritten\n" + mixed)
	if got := warnings(); len(got) != 0 {
		t.Errorf("the same mix warned again: %v", got)
	}
	// fixed: no warning; mixed again (many of another cost): warned, naming a few
	reload(file("alice:"+c4, "bob:"+c4))
	if got := warnings(); len(got) != 0 {
		t.Errorf("uniform costs warned: %v", got)
	}
	many := []string{"a:" + c4, "b:" + c4, "c:" + c4, "d:" + c4, "e:" + c4, "f:" + c4, "g:" + c4, "h:" + c4, "i:" + c4}
	for i := range 7 {
		many = append(many, fmt.Sprintf("u%d:%s", i, c5))
	}
	reload(file(many...))
	got = warnings()
	if len(got) != 1 || got[0].ContextMap()["other_cost_users"] != int64(7) ||
		fmt.Sprint(got[0].ContextMap()["other_cost_user_ids"]) != "[u0 u1 u2 u3 u4]" {
		t.Errorf("a new mix: %v", got)
	}
	// a realm of one cost never warns
	if _, err := newRealmUserDirectory("one-cost", []User{{ID: "x", Password: c4}, {ID: "y", Password: c4}}, "", logger); err != nil {
		t.Fatal(err)
	}
	if got := warnings(); len(got) != 0 {
		t.Errorf("a realm of one cost warned: %v", got)
	}
}
