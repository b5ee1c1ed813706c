package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
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
	testenv.Eventually(t, 30*time.Second, "alice can log in", func() bool { return login("alice", "alicepw").Status == 201 })
	r := login("alice@example.com", "alicepw")
	if r.Status != 201 || r.str("user.name") != "Alice" || r.str("user.team") != "blue" || strings.HasPrefix(r.str("authentication.payload.sub"), "$") {
		t.Fatalf("alice by email: %d %s", r.Status, r.Raw)
	}

	mustUsersCLI(t, "", "update", "alice", "--file", file, "--role", "admin", "--role", "staff")
	testenv.Eventually(t, 30*time.Second, "alice has her roles", func() bool {
		roles, _ := login("alice", "alicepw").Body["user"].(map[string]any)["roles"].([]any)
		return len(roles) == 2 && roles[0] == "admin" && roles[1] == "staff"
	})
	mustUsersCLI(t, "newpw\n", "update", "alice", "--file", file, "--password")
	testenv.Eventually(t, 30*time.Second, "alice's new password works", func() bool { return login("alice", "newpw").Status == 201 })
	if r := login("alice", "alicepw"); r.Status != 401 {
		t.Fatalf("alice's old password: %d", r.Status)
	}

	mustUsersCLI(t, "", "remove", "bob", "--file", file)
	testenv.Eventually(t, 30*time.Second, "bob is gone", func() bool { return login("bob", "bobpw").Status == 401 })

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
	testenv.Eventually(t, 30*time.Second, "the broken file is noticed", func() bool {
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
	testenv.Eventually(t, 30*time.Second, "carol can log in", func() bool { return login("carol", "carolpw").Status == 201 })
}
