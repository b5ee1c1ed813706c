package tokenauth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// changed is a fake flag set: the named flags were given.
type changed map[string]bool

func (c changed) Changed(name string) bool { return c[name] }

// TestUsersCommandErrors covers every refusal of the subcommand; none
// touches the file.
func TestUsersCommandErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.json")
	pw := func(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }
	base := func(action, id string) *usersEdit {
		return &usersEdit{action: action, file: file, id: id, flags: changed{}, algorithm: "bcrypt", bcryptCost: 4,
			newPassword: action == "add", readPassword: pw("pw"), out: &bytes.Buffer{}}
	}
	if err := base("add", "alice").run(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(file)
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("bob:"+testenv.Hash(t, "x")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := map[string]struct {
		edit func() *usersEdit
		want string
	}{
		"no file flag":    {func() *usersEdit { e := base("list", ""); e.file = ""; return e }, "--file is required"},
		"list missing":    {func() *usersEdit { e := base("list", ""); e.file = filepath.Join(dir, "none.json"); return e }, "no such file"},
		"add existing":    {func() *usersEdit { return base("add", "alice") }, "already exists"},
		"update unknown":  {func() *usersEdit { return base("update", "nobody") }, "no user \"nobody\""},
		"remove unknown":  {func() *usersEdit { return base("remove", "nobody") }, "no user \"nobody\""},
		"remove the last": {func() *usersEdit { return base("remove", "alice") }, "is the last one"},
		"empty password":  {func() *usersEdit { e := base("add", "bob"); e.readPassword = pw(""); return e }, "password is empty"},
		"password error": {func() *usersEdit {
			e := base("add", "bob")
			e.readPassword = func() ([]byte, error) { return nil, errors.New("no tty") }
			return e
		}, "no tty"},
		"bad algorithm":   {func() *usersEdit { e := base("add", "bob"); e.algorithm = "md5"; return e }, "unknown --algorithm"},
		"bad bcrypt cost": {func() *usersEdit { e := base("add", "bob"); e.bcryptCost = 99; return e }, "--bcrypt-cost"},
		"bad claim": {func() *usersEdit {
			e := base("add", "bob")
			e.flags, e.claims = changed{"claim": true}, []string{"novalue"}
			return e
		}, "key=value"},
		"reserved claim": {func() *usersEdit {
			e := base("update", "alice")
			e.flags, e.claims = changed{"claim": true}, []string{"sub=root"}
			return e
		}, "reserved"},
		"htpasswd file":  {func() *usersEdit { e := base("add", "carol"); e.file = htpasswd; return e }, "not a JSON users file"},
		"unknown action": {func() *usersEdit { return base("rename", "alice") }, "unknown action"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := c.edit().run()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			if now, _ := os.ReadFile(file); !bytes.Equal(now, before) {
				t.Fatalf("the file changed")
			}
		})
	}
}

// TestHashPasswordVerifiesWithCaddyauth checks both algorithms produce
// hashes the handler (caddyauth's comparers) accepts, for the right
// password only.
func TestHashPasswordVerifiesWithCaddyauth(t *testing.T) {
	for _, alg := range []string{"argon2id", "bcrypt"} {
		h, err := hashPassword([]byte("s3cret"), alg, 4)
		if err != nil {
			t.Fatal(err)
		}
		list, err := newUserList([]User{{ID: "u", Password: h}})
		if err != nil {
			t.Fatalf("%s hash %q refused: %v", alg, h, err)
		}
		for pw, want := range map[string]bool{"s3cret": true, "s3cre": false} {
			ok, err := list.comparer.Compare([]byte(h), []byte(pw))
			if err != nil || ok != want {
				t.Errorf("%s: compare %q = %v, %v; want %v", alg, pw, ok, err, want)
			}
		}
	}
}

// TestWriteFileAtomic: the file is replaced whole with the given mode and
// no temporary file stays behind, also when the rename fails.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	info, _ := os.Stat(path)
	if string(data) != "new" || info.Mode().Perm() != 0o640 {
		t.Fatalf("got %q mode %v", data, info.Mode())
	}
	// renaming over a non-empty directory fails
	target := filepath.Join(dir, "adir")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(target, []byte("x"), 0o600); err == nil {
		t.Fatal("writing over a directory succeeded")
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing-dir", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}
