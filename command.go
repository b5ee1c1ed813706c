package tokenauth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// The `caddy token-auth-users` command edits a JSON users file. It writes
// the file atomically, so a running Caddy that watches it (users_file)
// sees either the old or the new list, never half a file.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "token-auth-users",
		Usage: "add|update|remove|list [<id>] --file <users.json> [--email <e>] [--name <n>] [--role <r>]... [--claim <k>=<v>]... [--algorithm argon2id|bcrypt] | invite <id> --realm <r> [--address <admin>]",
		Short: "Manages the users of a token_auth users_file",
		Long: `
Adds, updates, removes and lists users in a JSON users file of the
token_auth handler ({"users":[...]}). A running Caddy picks up the change
within a few seconds, without a reload.

  caddy token-auth-users add alice --file users.json --email alice@example.com --role admin
  caddy token-auth-users update alice --file users.json --password
  caddy token-auth-users update alice --file users.json --role staff --role admin
  caddy token-auth-users remove alice --file users.json
  caddy token-auth-users list --file users.json
  caddy token-auth-users mfa reset alice --realm default   (through the admin API)
  caddy token-auth-users invite alice --realm default   (a passkey invitation link)

The password (for add, and for update with --password) is prompted for
without echo when standard input is a terminal; otherwise one line is read
from standard input: echo "$PW" | caddy token-auth-users add ...
It is hashed with argon2id (default) or bcrypt, as caddy hash-password does.
The file is replaced atomically (temporary file, fsync, rename) and keeps
its permissions; a new file is created with mode 0600. Edits take turns on
the lock file <file>.lock beside it, so two runs at once lose no edit.
`,
		CobraFunc: setUpUsersCommand,
	})
}

func setUpUsersCommand(cmd *cobra.Command) {
	cmd.PersistentFlags().StringP("file", "f", "", "The JSON users file (required)")
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }

	editFlags := func(c *cobra.Command) {
		c.Flags().String("email", "", "Email address; the user may log in with it")
		c.Flags().String("name", "", "Display name")
		c.Flags().StringArray("role", nil, "A role (repeat for several; on update, replaces the roles)")
		c.Flags().StringArray("claim", nil, "A custom claim `key=value` (repeat for several; on update, replaces the claims)")
		c.Flags().StringP("algorithm", "a", "argon2id", "Password hash algorithm: argon2id or bcrypt")
		c.Flags().Int("bcrypt-cost", 14, "bcrypt cost (with --algorithm bcrypt); 14 is caddy hash-password's default")
	}
	add := &cobra.Command{
		Use: "add <id>", Short: "Adds a user (asks for the password)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runUsersCommand(c, "add", args) },
	}
	editFlags(add)
	update := &cobra.Command{
		Use: "update <id>", Short: "Changes a user's details, and with --password its password", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runUsersCommand(c, "update", args) },
	}
	editFlags(update)
	update.Flags().Bool("password", false, "Set a new password (asked for)")
	remove := &cobra.Command{
		Use: "remove <id>", Short: "Removes a user; their sessions end at their next refresh", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runUsersCommand(c, "remove", args) },
	}
	list := &cobra.Command{
		Use: "list", Short: "Lists the users (never their hashes)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runUsersCommand(c, "list", args) },
	}
	cmd.AddCommand(add, update, remove, list, inviteCommand(), mfaCommand()) // passkeys_invite.go, mfa_command.go
}

// usersEdit is one parsed invocation, separated from cobra and the
// terminal so that it can be tested directly.
type usersEdit struct {
	action string
	file   string
	id     string
	flags  interface {
		Changed(string) bool
	}
	email, name, algorithm string
	roles, claims          []string
	bcryptCost             int
	newPassword            bool
	readPassword           func() ([]byte, error)
	out                    io.Writer
}

func runUsersCommand(c *cobra.Command, action string, args []string) error {
	e := &usersEdit{action: action, flags: c.Flags(), out: c.OutOrStdout(), readPassword: promptPassword}
	e.file, _ = c.Flags().GetString("file")
	if len(args) > 0 {
		e.id = args[0]
	}
	if action == "add" || action == "update" {
		e.email, _ = c.Flags().GetString("email")
		e.name, _ = c.Flags().GetString("name")
		e.roles, _ = c.Flags().GetStringArray("role")
		e.claims, _ = c.Flags().GetStringArray("claim")
		e.algorithm, _ = c.Flags().GetString("algorithm")
		e.bcryptCost, _ = c.Flags().GetInt("bcrypt-cost")
		e.newPassword = action == "add"
		if action == "update" {
			e.newPassword, _ = c.Flags().GetBool("password")
		}
	}
	c.SilenceUsage = true
	return e.run()
}

func (e *usersEdit) run() error {
	if e.file == "" {
		return errors.New("--file is required")
	}
	if e.action == "list" {
		users, _, err := readUsersJSON(e.file, false)
		if err != nil {
			return err
		}
		return listUsers(e.out, users)
	}
	// The password is asked for and hashed before the lock is taken, so a
	// prompt or a slow hash never holds up another run; a first look at
	// the file finds a wrong id before the password is asked for.
	users, _, err := readUsersJSON(e.file, e.action == "add")
	if err != nil {
		return err
	}
	if _, err := e.locate(users); err != nil {
		return err
	}
	hash, err := e.newPasswordHash()
	if err != nil {
		return err
	}
	unlock, err := lockUsersFile(e.file) // usersfile_lock.go
	if err != nil {
		return err
	}
	defer unlock()
	return e.edit(hash)
}

// edit applies the change to the file as it is now (read under the lock:
// another run may have changed it since the first look) and writes it.
func (e *usersEdit) edit(hash string) error {
	users, mode, err := readUsersJSON(e.file, e.action == "add")
	if err != nil {
		return err
	}
	i, err := e.locate(users)
	if err != nil {
		return err
	}
	switch e.action {
	case "remove":
		users = append(users[:i], users[i+1:]...)
	case "add":
		users = append(users, User{ID: e.id})
		i = len(users) - 1
		fallthrough
	case "update":
		if err := e.apply(&users[i], hash); err != nil {
			return err
		}
	}
	// check the whole list as the running handler will, so it never
	// meets a file it would reject
	if _, err := newUserList(users); err != nil {
		return err
	}
	if len(users) == 0 {
		return fmt.Errorf("%s: user %q is the last one; a users file without users is refused by token_auth (it keeps its last good list), so it is not changed", e.file, e.id)
	}
	data, err := json.MarshalIndent(struct {
		Users []User `json:"users"`
	}{users}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(e.file, append(data, '\n'), mode); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "%s: user %q %s\n", e.file, e.id, map[string]string{"add": "added", "update": "updated", "remove": "removed"}[e.action])
	return nil
}

// locate finds the user the edit is about: its index for update and
// remove (which need it to exist), -1 for add (which needs it not to).
func (e *usersEdit) locate(users []User) (int, error) {
	i := indexOfUser(users, e.id)
	switch e.action {
	case "add":
		if i >= 0 {
			return -1, fmt.Errorf("user %q already exists in %s (use update)", e.id, e.file)
		}
	case "remove":
		if i < 0 {
			return -1, fmt.Errorf("no user %q in %s", e.id, e.file)
		}
	case "update":
		if i < 0 {
			return -1, fmt.Errorf("no user %q in %s (use add)", e.id, e.file)
		}
	default:
		return -1, fmt.Errorf("unknown action %q", e.action)
	}
	return i, nil
}

// apply sets the fields given on the command line, and the password's
// hash unless it is "".
func (e *usersEdit) apply(u *User, hash string) error {
	if e.flags.Changed("email") {
		u.Email = e.email
	}
	if e.flags.Changed("name") {
		u.Name = e.name
	}
	if e.flags.Changed("role") {
		u.Roles = nil
		for _, r := range e.roles {
			if r = strings.TrimSpace(r); r != "" {
				u.Roles = append(u.Roles, r)
			}
		}
	}
	if e.flags.Changed("claim") {
		u.Claims = nil
		for _, kv := range e.claims {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--claim wants key=value, got %q", kv)
			}
			if reservedClaims[k] {
				return fmt.Errorf("claim %q is reserved", k)
			}
			if u.Claims == nil {
				u.Claims = make(map[string]any)
			}
			u.Claims[k] = v
		}
	}
	if hash != "" {
		u.Password = hash
	}
	return nil
}

// newPasswordHash asks for the new password, if the edit sets one, and
// hashes it; "" when it sets none.
func (e *usersEdit) newPasswordHash() (string, error) {
	if !e.newPassword {
		return "", nil
	}
	pw, err := e.readPassword()
	if err != nil {
		return "", err
	}
	if len(pw) == 0 {
		return "", errors.New("the password is empty")
	}
	return hashPassword(pw, e.algorithm, e.bcryptCost)
}

func indexOfUser(users []User, id string) int {
	for i := range users {
		if users[i].ID == id {
			return i
		}
	}
	return -1
}

func listUsers(w io.Writer, users []User) error {
	sorted := append([]User(nil), users...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	fmt.Fprintln(w, "ID\tEMAIL\tNAME\tROLES\tHASH")
	for _, u := range sorted {
		alg := "bcrypt"
		if strings.HasPrefix(u.Password, "$argon2id$") {
			alg = "argon2id"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Name, strings.Join(u.Roles, ","), alg)
	}
	return nil
}

// readUsersJSON reads and checks a JSON users file. A missing file is an
// empty list when allowed (adding the first user creates it).
func readUsersJSON(path string, mayCreate bool) ([]User, os.FileMode, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && mayCreate {
		return nil, 0o600, nil
	}
	if err != nil {
		return nil, 0, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] != '{' {
		return nil, 0, fmt.Errorf("%s is not a JSON users file (htpasswd files are edited with other tools)", path)
	}
	users, err := parseUsersJSON(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %v (not changed)", path, err)
	}
	return users, info.Mode().Perm(), nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory is written, synced and renamed over it, then the directory is
// synced, so readers see the old or the new content and a crash leaves one
// of them.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// promptPassword asks twice without echo on a terminal; otherwise it reads
// one line from standard input.
func promptPassword() ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
	fmt.Fprint(os.Stderr, "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(os.Stderr, "Confirm password: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords do not match")
	}
	return pw, nil
}
