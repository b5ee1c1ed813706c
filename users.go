package tokenauth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// User is an account that may log in.
type User struct {
	// The user's id: the `sub` of its tokens and the `username` it logs in with.
	ID string `json:"id"`

	// The password hash, bcrypt or argon2id, exactly as `caddy hash-password` prints it.
	Password string `json:"password"`

	// Email address; the user may log in with it instead of the id.
	Email string `json:"email,omitempty"`

	// Display name, carried in the `name` claim.
	Name string `json:"name,omitempty"`

	// Roles, carried in the `roles` claim and checked by `require role`.
	Roles []string `json:"roles,omitempty"`

	// Custom claims added to the user's access tokens and exposed as
	// `{http.auth.user.<claim>}` placeholders.
	Claims map[string]any `json:"claims,omitempty"`
}

// publicUser is the `user` object of endpoint answers: never a hash.
func (u *User) publicUser() map[string]any {
	out := make(map[string]any, 4+len(u.Claims))
	for k, v := range u.Claims {
		out[k] = v
	}
	out["id"] = u.ID
	if u.Email != "" {
		out["email"] = u.Email
	}
	if u.Name != "" {
		out["name"] = u.Name
	}
	if len(u.Roles) > 0 {
		out["roles"] = u.Roles
	}
	return out
}

// validate checks one user; where names the user in error messages.
func (u *User) validate() error {
	if u.ID == "" {
		return errors.New("user without id")
	}
	// no password: a passkey-only account (passkeys.go)
	if u.Password != "" {
		if _, err := comparerFor(u.Password); err != nil {
			return fmt.Errorf("user %q: %v", u.ID, err)
		}
	}
	for k := range u.Claims {
		if reservedClaims[k] || signInClaims[k] {
			return fmt.Errorf("user %q: claim %q is reserved", u.ID, k)
		}
	}
	return nil
}

// userList is an immutable, indexed set of users.
type userList struct {
	byID    map[string]*User
	byEmail map[string]*User
	// fake is the hash an unknown login is checked against, of the same
	// algorithm as the realm's users.
	fake     []byte
	comparer passwordComparer
}

func newUserList(users []User) (*userList, error) {
	l := &userList{byID: make(map[string]*User), byEmail: make(map[string]*User)}
	for i := range users {
		u := &users[i]
		if err := u.validate(); err != nil {
			return nil, err
		}
		if _, dup := l.byID[u.ID]; dup {
			return nil, fmt.Errorf("user %q is defined twice", u.ID)
		}
		l.byID[u.ID] = u
		if u.Email == "" {
			continue
		}
		// emails compare case-insensitively (logins do), so two users
		// whose emails differ only in case would shadow each other
		email := strings.ToLower(u.Email)
		if other := l.byEmail[email]; other != nil {
			return nil, fmt.Errorf("users %q and %q have the same email %q (emails compare case-insensitively)", other.ID, u.ID, u.Email)
		}
		l.byEmail[email] = u
	}
	l.comparer, l.fake = dummyHashFor(users) // same algorithm and cost as the users
	return l, nil
}

// find looks a login name up: an email address first by email, anything
// else first by id.
func (l *userList) find(login string, isEmail bool) *User {
	byEmail := l.byEmail[strings.ToLower(login)]
	byID := l.byID[login]
	if isEmail && byEmail != nil || byID == nil {
		return byEmail
	}
	return byID
}

// parseUsersFile reads a users file: JSON `{"users":[...]}` or htpasswd
// lines `id:hash`. Errors name the line.
func parseUsersFile(data []byte) ([]User, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseUsersJSON(data)
	}
	return parseHtpasswd(data)
}

func parseUsersJSON(data []byte) ([]User, error) {
	var doc struct {
		Users []User `json:"users"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("line %d: %v", jsonErrorLine(data, err, dec.InputOffset()), err)
	}
	for i := range doc.Users {
		if err := doc.Users[i].validate(); err != nil {
			return nil, fmt.Errorf("user #%d (line %d): %v", i+1, userLine(data, i), err)
		}
	}
	return doc.Users, nil
}

// jsonErrorLine turns a JSON decoding error's byte offset into a line number.
func jsonErrorLine(data []byte, err error, fallback int64) int {
	offset := fallback
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset
	case errors.As(err, &typeErr):
		offset = typeErr.Offset
	}
	if off, ok := unknownFieldOffset(data, err); ok {
		offset = off
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	return 1 + bytes.Count(data[:offset], []byte("\n"))
}

// userLine finds the line where the i-th user object starts, for messages.
func userLine(data []byte, i int) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, seen := 0, -1
	for {
		tok, err := dec.Token()
		if err != nil {
			return 0
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
				if d == '{' && depth == 3 {
					seen++
					if seen == i {
						return jsonErrorLine(data, nil, dec.InputOffset())
					}
				}
			case '}', ']':
				depth--
			}
		}
	}
}

func parseHtpasswd(data []byte) ([]User, error) {
	var users []User
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 1
	for ; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, hash, ok := strings.Cut(line, ":")
		if !ok || id == "" || hash == "" {
			return nil, fmt.Errorf("line %d: want `user:hash`", n)
		}
		u := User{ID: id, Password: hash}
		if err := u.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		users = append(users, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %v", n, err) // e.g. a line over 64 KiB
	}
	return users, nil
}

// checkFileHasUsers refuses a users file without users. A zero-byte file
// is what `>`, many editors and config tools leave for a moment while
// rewriting one: taken as the list, it would lock every user out until the
// next read. So it is a broken file like any other (the last good list is
// kept); to shut everyone out, remove the users_file option.
func checkFileHasUsers(users []User) error {
	if len(users) == 0 {
		return errors.New("no users (an empty file, or one being rewritten, is refused; the last good list is kept)")
	}
	return nil
}

// warnNoSignIn says, at provision, when nobody could ever sign in at this
// handler: no `user`, no `users_file` and no identity provider. Passkeys
// and passkey invitations do not count: both need a user in the list. It
// is a warning, not an error, because such a handler still guards with the
// tokens its keys verify (signed by another instance sharing the signing
// key), and its login endpoint answers every attempt 401.
func (ta *TokenAuth) warnNoSignIn() {
	if len(ta.Users) > 0 || ta.UsersFile != "" || len(ta.IdentityProviders) > 0 {
		return
	}
	ta.logger.Warn("token_auth has no users and no identity provider: nobody can sign in here, every login is refused; "+
		"add `user` lines, a `users_file` or an `identity_provider` (the guard still accepts tokens its keys verify)",
		zap.String("realm", ta.Realm), zap.String("endpoint", ta.Endpoint))
}

// userDirectory is the handler's view of its users: inline users plus an
// optional users file, re-read when the file changes on disk. A broken file
// keeps the last good list.
type userDirectory struct {
	realm  string // names the realm in warnings (warnMixedCosts)
	inline []User
	path   string
	logger *zap.Logger

	mu        sync.Mutex
	current   *userList
	fileStamp fileStamp
	checked   time.Time

	// compares counts password verifications, for tests: every login
	// attempt, known user or not, costs exactly one.
	compares atomic.Int64
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// fileCheckInterval bounds how often the users file is stat'ed.
const fileCheckInterval = time.Second

func newUserDirectory(inline []User, path string, logger *zap.Logger) (*userDirectory, error) {
	return newRealmUserDirectory("", inline, path, logger)
}

// newRealmUserDirectory is the user directory of a realm's handler.
func newRealmUserDirectory(realm string, inline []User, path string, logger *zap.Logger) (*userDirectory, error) {
	d := &userDirectory{realm: realm, inline: inline, path: path, logger: logger}
	if err := d.load(); err != nil {
		return nil, err
	}
	return d, nil
}

// load reads the file (if any) and replaces the list, or fails leaving it.
func (d *userDirectory) load() error {
	all := append([]User(nil), d.inline...)
	var stamp fileStamp
	if d.path != "" {
		info, err := os.Stat(d.path)
		if err != nil {
			return fmt.Errorf("users file: %v", err)
		}
		data, err := os.ReadFile(d.path)
		if err != nil {
			return fmt.Errorf("users file: %v", err)
		}
		fromFile, err := parseUsersFile(data)
		if err == nil {
			err = checkFileHasUsers(fromFile)
		}
		if err != nil {
			return fmt.Errorf("users file %s: %v", d.path, err)
		}
		all = append(all, fromFile...)
		stamp = fileStamp{mod: info.ModTime(), size: info.Size()}
	}
	list, err := newUserList(all)
	if err != nil {
		return err
	}
	d.current, d.fileStamp = list, stamp
	warnMixedCosts(d.logger, d.realm, all) // passwords.go
	return nil
}

// users returns the current list, first re-reading the users file if it
// changed since it was last read.
func (d *userDirectory) users() *userList {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.path != "" && time.Since(d.checked) >= fileCheckInterval {
		d.checked = time.Now()
		d.reloadIfChanged()
	}
	return d.current
}

func (d *userDirectory) reloadIfChanged() {
	info, err := os.Stat(d.path)
	if err != nil {
		d.logger.Error("users file unreadable; keeping the last good user list", zap.String("path", d.path), zap.Error(err))
		return
	}
	if (fileStamp{mod: info.ModTime(), size: info.Size()}) == d.fileStamp {
		return
	}
	if err := d.load(); err != nil {
		d.logger.Error("users file is broken; keeping the last good user list", zap.Error(err))
		// remember the broken version so the error is logged once per change
		d.fileStamp = fileStamp{mod: info.ModTime(), size: info.Size()}
		return
	}
	d.logger.Info("users file reloaded", zap.String("path", d.path), zap.Int("users", len(d.current.byID)))
}

// authenticate checks a login and password. An unknown login is checked
// against a fake hash so that it costs the same as a wrong password.
func (d *userDirectory) authenticate(login, password string, isEmail bool) (*User, error) {
	list := d.users()
	u := list.find(login, isEmail)
	if u != nil && u.Password == "" {
		// a passkey-only account: no password signs it in, and trying
		// costs what an unknown user costs
		u = nil
	}
	hash, comparer := list.fake, list.comparer
	if u != nil {
		hash = []byte(u.Password)
		comparer, _ = comparerFor(u.Password)
	}
	d.compares.Add(1)
	ok, err := comparer.Compare(hash, []byte(password))
	if err != nil {
		return nil, fmt.Errorf("comparing password hash: %w", err)
	}
	if !ok || u == nil {
		return nil, nil
	}
	return u, nil
}

// byID returns the user with that id, or nil.
func (d *userDirectory) byID(id string) *User {
	return d.users().byID[id]
}

// unknownFieldOffset finds where the field named by a
// json.Decoder.DisallowUnknownFields error first appears as a key of the
// users file's own objects (the document, a user):
// that error carries no position of its own (the decoder's offset is then
// past the whole document).
func unknownFieldOffset(data []byte, err error) (int64, bool) {
	if err == nil {
		return 0, false
	}
	quoted, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return 0, false
	}
	field, uerr := strconv.Unquote(quoted)
	if uerr != nil {
		return 0, false
	}
	type frame struct{ object, wantKey bool }
	var stack []frame
	afterValue := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return 0, false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				afterValue()
				continue
			}
			// only where users-file fields are: the top object (depth
			// 1) and the user objects (depth 3), not inside claims
			if s, _ := tok.(string); s == field && (n == 1 || n == 3) {
				return dec.InputOffset(), true
			}
			stack[n-1].wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			afterValue()
		default:
			afterValue()
		}
	}
}
