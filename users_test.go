package tokenauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/argon2"
)

// testArgon2idHash returns an argon2id hash in the format `caddy
// hash-password --algorithm argon2id` prints, with cheap parameters.
func testArgon2idHash(t testing.TB, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=1024,t=1,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func TestParseUsersFileJSON(t *testing.T) {
	bh, ah := testenv.Hash(t, "pw-alice"), testArgon2idHash(t, "pw-bob")
	data := fmt.Sprintf(`{"users":[
  {"id":"alice","password":%q,"email":"alice@example.com","name":"Alice","roles":["admin"],"claims":{"team":"blue","level":3}},
  {"id":"bob","password":%q}
]}`, bh, ah)
	users, err := parseUsersFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].ID != "alice" || users[0].Email != "alice@example.com" || users[0].Name != "Alice" ||
		users[0].Roles[0] != "admin" || users[0].Claims["team"] != "blue" || users[0].Claims["level"] != float64(3) ||
		users[1].ID != "bob" || users[1].Password != ah {
		t.Fatalf("parsed: %+v", users)
	}
	pub := users[0].publicUser()
	if _, ok := pub["password"]; ok || pub["id"] != "alice" || pub["team"] != "blue" {
		t.Fatalf("publicUser: %v", pub)
	}

	// both hash formats log in
	dir, err := newUserDirectory(nil, writeTemp(t, data), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		login, pw string
		isEmail   bool
		want      string
	}{
		{"alice", "pw-alice", false, "alice"},
		{"alice@example.com", "pw-alice", true, "alice"},
		{"ALICE@example.com", "pw-alice", true, "alice"},
		{"bob", "pw-bob", false, "bob"},
		{"bob", "pw-alice", false, ""},
		{"alice", "", false, ""},
		// (an unknown user costs a cost-14 fake hash: tested end to end in
		// TestE2EBadInput, too slow under -race here)
		{"alice@example.com", "pw-alice", false, "alice"}, // a username that is an email address
	} {
		u, err := dir.authenticate(c.login, c.pw, c.isEmail)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		got := ""
		if u != nil {
			got = u.ID
		}
		if got != c.want {
			t.Fatalf("authenticate(%q, %q): %q, want %q", c.login, c.pw, got, c.want)
		}
	}
}

func TestParseUsersFileHtpasswd(t *testing.T) {
	data := "# comment\n\nalice:" + testenv.Hash(t, "a") + "\n  bob:" + testArgon2idHash(t, "b") + "  \n"
	users, err := parseUsersFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].ID != "alice" || users[1].ID != "bob" || strings.HasSuffix(users[1].Password, " ") {
		t.Fatalf("parsed: %+v", users)
	}
}

func TestParseUsersFileErrorsNameTheLine(t *testing.T) {
	h := testenv.Hash(t, "x")
	for name, c := range map[string]struct{ data, want string }{
		"htpasswd without colon":   {"alice:" + h + "\nbob\n", "line 2: want `user:hash`"},
		"htpasswd empty hash":      {"# c\nalice:\n", "line 2: want `user:hash`"},
		"htpasswd plain password":  {"alice:" + h + "\n\nbob:secret\n", "line 3: user \"bob\": password must be a bcrypt or argon2id hash"},
		"htpasswd broken argon2id": {"alice:$argon2id$v=19$garbage\n", "line 1: user \"alice\": malformed argon2id hash"},
		"JSON syntax":              {"{\"users\":[\n{\"id\":\"alice\",\n\"password\":\"" + h + "\"\n}\n,,]}", "line 5:"},
		"JSON wrong type":          {"{\"users\":[\n{\"id\":\"alice\",\n\"roles\":\"admin\"}]}", "line 3:"},
		"JSON unknown field":       {"{\"users\":[{\"id\":\"alice\",\"pasword\":\"x\"}]}", "unknown field \"pasword\""},
		"JSON reserved claim":      {"{\"users\":[\n{\"id\":\"alice\",\"password\":\"" + h + "\",\"claims\":{\"sub\":\"root\"}}]}", "user #1 (line 2): user \"alice\": claim \"sub\" is reserved"},
		"JSON user without id":     {"{\"users\":[{\"password\":\"" + h + "\"}]}", "user without id"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseUsersFile([]byte(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	// duplicates across inline users and the file are refused
	if _, err := newUserList([]User{{ID: "a", Password: h}, {ID: "a", Password: h}}); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate user: %v", err)
	}
}

func writeTemp(t *testing.T, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUsersFileReloadKeepsLastGoodList: the file is re-read when it
// changes; a broken version is logged and the previous list stays.
func TestUsersFileReloadKeepsLastGoodList(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	path := writeTemp(t, "alice:"+testenv.Hash(t, "a")+"\n")
	inline := []User{{ID: "carol", Password: testenv.Hash(t, "c")}}
	dir, err := newUserDirectory(inline, path, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// recheck forces the next lookup to look at the file again, and makes
	// sure the change is visible even where mtimes are coarse
	recheck := func(data string, age time.Duration) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		mod := time.Now().Add(-age)
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
		dir.mu.Lock()
		dir.checked = time.Time{}
		dir.mu.Unlock()
	}
	has := func(id string) bool { return dir.byID(id) != nil }
	if !has("alice") || !has("carol") || has("bob") {
		t.Fatal("initial list")
	}

	recheck("alice:"+testenv.Hash(t, "a")+"\nbob:"+testenv.Hash(t, "b")+"\n", 3*time.Hour)
	if !has("bob") || !has("alice") || !has("carol") {
		t.Fatal("the changed file was not re-read")
	}

	recheck("alice:"+testenv.Hash(t, "a")+"\nthis line is broken\n", 2*time.Hour)
	if !has("bob") || !has("alice") || !has("carol") {
		t.Fatal("a broken file replaced the last good list")
	}
	broken := logs.FilterMessage("users file is broken; keeping the last good user list").All()
	if len(broken) != 1 || !strings.Contains(fmt.Sprint(broken[0].ContextMap()["error"]), "line 2") {
		t.Fatalf("broken file not logged with its line: %+v", logs.All())
	}
	// the same broken file is not re-read (and re-logged) on every request
	dir.mu.Lock()
	dir.checked = time.Time{}
	dir.mu.Unlock()
	has("alice")
	if n := logs.FilterMessage("users file is broken; keeping the last good user list").Len(); n != 1 {
		t.Fatalf("broken file logged %d times", n)
	}

	recheck("dave:"+testenv.Hash(t, "d")+"\n", time.Hour)
	if !has("dave") || has("alice") || has("bob") || !has("carol") {
		t.Fatal("a fixed file was not taken")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	dir.mu.Lock()
	dir.checked = time.Time{}
	dir.mu.Unlock()
	if !has("dave") {
		t.Fatal("a vanished file dropped the last good list")
	}
	if logs.FilterMessage("users file unreadable; keeping the last good user list").Len() != 1 {
		t.Fatal("a vanished file is not logged")
	}

	// at start, a broken or missing file is a config error
	if _, err := newUserDirectory(nil, path, zap.NewNop()); err == nil {
		t.Fatal("missing users file accepted at start")
	}
	if _, err := newUserDirectory(nil, writeTemp(t, "x\n"), zap.NewNop()); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("broken users file at start: %v", err)
	}
}

func TestUsersFileErrorsNameTheLine(t *testing.T) {
	good := testenv.Hash(t, "pw")
	for _, tc := range []struct{ name, file, want string }{
		{"json syntax", "{\n  \"users\": [\n    {\"id\": \"a\",, }\n  ]\n}", "line 3"},
		{"json wrong type", "{\n \"users\": [\n  {\"id\": \"a\",\n   \"roles\": \"admin\"}\n ]\n}", "line 4"},
		{"json unknown field", "{\n \"users\": [\n  {\"id\": \"a\", \"claims\": {\"pasword\": 1, \"x\": [{\"pasword\": 2}]},\n  \"pasword\": \"x\"}\n ]\n}", "line 4"},
		{"json unknown top field", "{\n \"users\": [],\n\n \"groups\": []\n}", "line 4"},
		{"json bad hash", "{\"users\": [\n {\"id\": \"a\", \"password\": \"" + good + "\"},\n {\"id\": \"b\",\n  \"password\": \"plain\"}\n]}", "user #2 (line 3)"},
		{"json reserved claim", "{\"users\": [\n\n {\"id\": \"a\", \"password\": \"" + good + "\", \"claims\": {\"sub\": \"x\"}}]}", "line 3"},
		{"htpasswd no colon", "a:" + good + "\n# comment\nbroken\n", "line 3"},
		{"htpasswd bad hash", "\n\nb:{SHA}abc\n", "line 3"},
		{"htpasswd line too long", "a:" + good + "\nb:" + strings.Repeat("x", 70<<10) + "\n", "line 2"},
		{"htpasswd empty id", "a:" + good + "\n:" + good + "\n", "line 2"},
	} {
		_, err := parseUsersFile([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}

	// Through the directory, the path is named too.
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("a:"+good+"\nbad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newUserDirectory(nil, path, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("users file error %v, want path and line", err)
	}
}

// TestUsersFileWithoutUsersIsBroken: a users file with no users (zero
// bytes, as a rewrite leaves it for a moment; blank; comments only; an
// empty JSON list) is refused at start and, on a reload, keeps the last
// good list with an error logged.
func TestUsersFileWithoutUsersIsBroken(t *testing.T) {
	for name, data := range map[string]string{
		"zero bytes": "", "blank": "\n\n", "comments only": "# nobody yet\n",
		"empty JSON list": `{"users":[]}`, "empty JSON object": `{}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := newUserDirectory(nil, writeTemp(t, data), zap.NewNop()); err == nil || !strings.Contains(err.Error(), "no users") {
				t.Fatalf("at start: %v, want an error saying there are no users", err)
			}

			core, logs := observer.New(zap.InfoLevel)
			path := writeTemp(t, "alice:"+testenv.Hash(t, "a")+"\n")
			dir, err := newUserDirectory(nil, path, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			rewriteUsersFile(t, dir, data)
			if dir.byID("alice") == nil {
				t.Fatal("a users file without users replaced the last good list")
			}
			broken := logs.FilterMessage("users file is broken; keeping the last good user list").All()
			if len(broken) != 1 || !strings.Contains(fmt.Sprint(broken[0].ContextMap()["error"]), "no users") {
				t.Fatalf("not logged as broken: %+v", logs.All())
			}
		})
	}
}

// rewriteUsersFile replaces the directory's file and makes its next
// lookup look at it, with a modification time that differs from the last
// one read (mtimes may be coarse).
func rewriteUsersFile(t *testing.T, dir *userDirectory, data string) {
	t.Helper()
	if err := os.WriteFile(dir.path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	mod := dir.fileStamp.mod.Add(-time.Hour)
	if err := os.Chtimes(dir.path, mod, mod); err != nil {
		t.Fatal(err)
	}
	dir.mu.Lock()
	dir.checked = time.Time{}
	dir.mu.Unlock()
}

// TestDuplicateEmailIsAConfigError: two users whose emails differ only in
// case are an error naming both (at start), and a users file that
// introduces one keeps the last good list on reload; a login by email
// finds its user whatever the case.
func TestDuplicateEmailIsAConfigError(t *testing.T) {
	alice := User{ID: "alice", Password: testenv.Hash(t, "a"), Email: "Alice@Example.com"}
	mallory := User{ID: "mallory", Password: testenv.Hash(t, "m"), Email: "alice@example.COM"}
	if _, err := newUserDirectory([]User{alice, mallory}, "", zap.NewNop()); err == nil ||
		!strings.Contains(err.Error(), `"alice"`) || !strings.Contains(err.Error(), `"mallory"`) {
		t.Fatalf("duplicate email at start: %v, want an error naming both users", err)
	}

	core, logs := observer.New(zap.InfoLevel)
	path := writeTemp(t, `{"users":[{"id":"bob","password":"`+testenv.Hash(t, "b")+`"}]}`)
	dir, err := newUserDirectory([]User{alice}, path, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if u, err := dir.authenticate("ALICE@example.com", "a", true); err != nil || u == nil || u.ID != "alice" {
		t.Fatalf("login by email in another case: %v %v", u, err)
	}
	rewriteUsersFile(t, dir, `{"users":[{"id":"mallory","password":"`+testenv.Hash(t, "m")+`","email":"alice@EXAMPLE.com"}]}`)
	if dir.byID("mallory") != nil || dir.byID("bob") == nil {
		t.Fatal("a users file with a duplicate email replaced the last good list")
	}
	if u, _ := dir.authenticate("alice@example.com", "a", true); u == nil || u.ID != "alice" {
		t.Fatalf("alice's email now finds %v", u)
	}
	broken := logs.FilterMessage("users file is broken; keeping the last good user list").All()
	if len(broken) != 1 || !strings.Contains(fmt.Sprint(broken[0].ContextMap()["error"]), `"mallory"`) {
		t.Fatalf("not logged as broken, naming the users: %+v", logs.All())
	}
}

// TestNoSignInIsAWarning: a handler with no users, no users file and no
// identity provider provisions (it may only guard, with tokens signed
// elsewhere) and warns that nobody can sign in; one with any of them does
// not warn.
func TestNoSignInIsAWarning(t *testing.T) {
	ta := hs256Config("no-users")
	provisionInProcess(t, ta) // a warning, not an error
	warned := func(ta *TokenAuth) []observer.LoggedEntry {
		core, logs := observer.New(zap.WarnLevel)
		ta.logger = zap.New(core)
		ta.warnNoSignIn()
		return logs.FilterMessageSnippet("nobody can sign in here").All()
	}
	got := warned(ta)
	if len(got) != 1 || got[0].ContextMap()["realm"] != "no-users" ||
		!strings.Contains(got[0].Message, "`user` lines, a `users_file` or an `identity_provider`") {
		t.Fatalf("no users: %v", got)
	}
	for name, ta := range map[string]*TokenAuth{
		"user":              {Users: []User{{ID: "a", Password: testenv.Hash(t, "pw")}}},
		"users_file":        {UsersFile: "/etc/users.json"},
		"identity provider": {IdentityProviders: []IdentityProvider{{Name: "corp"}}},
	} {
		if got := warned(ta); len(got) != 0 {
			t.Errorf("with a %s: %v", name, got)
		}
	}
}
