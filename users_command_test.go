package tokenauth

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// usersCLI runs `caddy token-auth-users args...` with stdin, from the real
// binary of cmd/caddy.
func usersCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(caddyBinary(t), append([]string{"token-auth-users"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustUsersCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := usersCLI(t, stdin, args...)
	if err != nil {
		t.Fatalf("token-auth-users %v: %v\n%s", args, err, out)
	}
	return out
}

// TestUsersCommandWithRunningCaddy edits a users_file with the subcommand
// while Caddy runs: additions, updates and removals take effect without a
// reload; a broken file keeps the last good list, and the subcommand
// refuses to edit it.
func TestUsersCommandWithRunningCaddy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.json")
	mustUsersCLI(t, "bobpw\n", "add", "bob", "--file", file, "--algorithm", "bcrypt", "--bcrypt-cost", "4")
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("new users file: %v %v, want mode 0600", info.Mode(), err)
	}

	p := startCaddy(t, "", `
	token_auth /api/* {
		signing_key hs256 `+e2eSecret+`
		store memory
		users_file {DIR}/users.json
		# the test polls logins that fail until the file change is seen
		throttle off
	}
	respond "ok"
`, caddyOptions{Dir: dir})
	login := func(user, pw string) apiResponse {
		return p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": user, "password": pw})
	}
	if r := login("bob", "bobpw"); r.Status != 201 {
		t.Fatalf("bob: %d %s", r.Status, r.Raw)
	}
	if r := login("alice", "alicepw"); r.Status != 401 {
		t.Fatalf("alice before she exists: %d", r.Status)
	}

	// a CRLF line on stdin, as from a Windows pipe: the \r is not part of the password
	mustUsersCLI(t, "alicepw\r\n", "add", "alice", "--file", file, "--email", "alice@example.com", "--name", "Alice", "--claim", "team=blue")
	eventually(t, 30*time.Second, "alice can log in", func() bool { return login("alice", "alicepw").Status == 201 })
	r := login("alice@example.com", "alicepw")
	if r.Status != 201 || r.str("user.name") != "Alice" || r.str("user.team") != "blue" || strings.HasPrefix(r.str("authentication.payload.sub"), "$") {
		t.Fatalf("alice by email: %d %s", r.Status, r.Raw)
	}

	mustUsersCLI(t, "", "update", "alice", "--file", file, "--role", "admin", "--role", "staff")
	eventually(t, 30*time.Second, "alice has her roles", func() bool {
		roles, _ := login("alice", "alicepw").Body["user"].(map[string]any)["roles"].([]any)
		return len(roles) == 2 && roles[0] == "admin" && roles[1] == "staff"
	})
	mustUsersCLI(t, "newpw\n", "update", "alice", "--file", file, "--password")
	eventually(t, 30*time.Second, "alice's new password works", func() bool { return login("alice", "newpw").Status == 201 })
	if r := login("alice", "alicepw"); r.Status != 401 {
		t.Fatalf("alice's old password: %d", r.Status)
	}

	mustUsersCLI(t, "", "remove", "bob", "--file", file)
	eventually(t, 30*time.Second, "bob is gone", func() bool { return login("bob", "bobpw").Status == 401 })

	list := mustUsersCLI(t, "", "list", "--file", file)
	if !strings.Contains(list, "alice\talice@example.com\tAlice\tadmin,staff\targon2id") || strings.Contains(list, "bob") || strings.Contains(list, "$argon2id$") {
		t.Fatalf("list:\n%s", list)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, ".users.json.tmp-*")); len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}

	// a hand edit that breaks the file: Caddy keeps the last good list
	good, _ := os.ReadFile(file)
	broken := []byte(`{"users":[{"id":"mallory","password":"plain"}]}`)
	if err := os.WriteFile(file, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	// the file is checked when a login needs the user list
	eventually(t, 30*time.Second, "the broken file is noticed", func() bool {
		login("alice", "wrong")
		return strings.Contains(p.Logs(), "users file is broken")
	})
	if r := login("alice", "newpw"); r.Status != 201 {
		t.Fatalf("alice with a broken file: %d %s", r.Status, r.Raw)
	}
	if r := login("bob", "bobpw"); r.Status != 401 {
		t.Fatalf("bob with a broken file: %d", r.Status)
	}
	// the subcommand will not build on a broken file
	if out, err := usersCLI(t, "pw\n", "add", "carol", "--file", file); err == nil || !strings.Contains(out, "not changed") {
		t.Fatalf("add to a broken file: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(file); !bytes.Equal(now, broken) {
		t.Fatalf("the broken file was changed")
	}
	// repaired: back to normal
	if err := os.WriteFile(file, good, 0o600); err != nil {
		t.Fatal(err)
	}
	mustUsersCLI(t, "carolpw\n", "add", "carol", "--file", file, "--algorithm", "bcrypt", "--bcrypt-cost", "4")
	eventually(t, 30*time.Second, "carol can log in", func() bool { return login("carol", "carolpw").Status == 201 })
}

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
	if err := os.WriteFile(htpasswd, []byte("bob:"+testHash(t, "x")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := map[string]struct {
		edit func() *usersEdit
		want string
	}{
		"no file flag":   {func() *usersEdit { e := base("list", ""); e.file = ""; return e }, "--file is required"},
		"list missing":   {func() *usersEdit { e := base("list", ""); e.file = filepath.Join(dir, "none.json"); return e }, "no such file"},
		"add existing":   {func() *usersEdit { return base("add", "alice") }, "already exists"},
		"update unknown": {func() *usersEdit { return base("update", "nobody") }, "no user \"nobody\""},
		"remove unknown": {func() *usersEdit { return base("remove", "nobody") }, "no user \"nobody\""},
		"empty password": {func() *usersEdit { e := base("add", "bob"); e.readPassword = pw(""); return e }, "password is empty"},
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
