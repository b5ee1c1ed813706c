package tokenauth

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// flakyStore is a memory store that can be made unreachable.
type flakyStore struct {
	*memoryStore
	down atomic.Bool
	err  error // what it fails with; default errFlaky
}

var errFlaky = errors.Join(ErrStoreUnavailable, errors.New("connection refused"))

func (f *flakyStore) failure() error {
	if f.err != nil {
		return f.err
	}
	return errFlaky
}

func (f *flakyStore) Create(ctx context.Context, s Session, maxLive int) ([]string, error) {
	if f.down.Load() {
		return nil, f.failure()
	}
	return f.memoryStore.Create(ctx, s, maxLive)
}

func (f *flakyStore) Rotate(ctx context.Context, sid string, presented uint64, now time.Time, grace time.Duration) (Session, rotation, error) {
	if f.down.Load() {
		return Session{}, 0, f.failure()
	}
	return f.memoryStore.Rotate(ctx, sid, presented, now, grace)
}

func (f *flakyStore) Revoke(ctx context.Context, sid string) error {
	if f.down.Load() {
		return f.failure()
	}
	return f.memoryStore.Revoke(ctx, sid)
}

// inProcessHandler is a provisioned handler without Caddy around it, for
// the failures a real process cannot be made to show.
func inProcessHandler(t *testing.T) (*TokenAuth, *flakyStore, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	ta := &TokenAuth{Users: []User{{ID: "alice", Password: testenv.Hash(t, "alice-password")}}}
	ta.applyDefaults()
	keys, err := newKeyRing(KeyConfig{Algorithm: "hs256", Key: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ta.tokens = newTokenService(keys, ta.Issuer, ta.Audience, time.Duration(ta.AccessTTL))
	ta.logger = zap.New(core)
	ta.now = time.Now
	if ta.users, err = newUserDirectory(ta.Users, "", ta.logger); err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{memoryStore: newMemoryStore()}
	ta.realm = &realmState{name: ta.Realm, store: store, revoked: newRevocationSet()}
	return ta, store, logs
}

func serveRequest(t *testing.T, ta *TokenAuth, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(200); return nil })
	if err := ta.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w
}

func formRequest(method, target string, form url.Values, cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

// TestBrowserStoreOutageLoggedOnce: an outage the store has logged (as
// Redis does, once per outage) is not logged again per browser request:
// form logins and refreshes during it add no line, like the JSON path.
func TestBrowserStoreOutageLoggedOnce(t *testing.T) {
	ta, store, logs := inProcessHandler(t)
	login := url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {"/private/"}}
	w := serveRequest(t, ta, formRequest("POST", "/authentication", login))
	var refresh *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == refreshCookieName {
			refresh = c
		}
	}
	if refresh == nil {
		t.Fatalf("login: %d %v", w.Code, w.Header())
	}
	store.err = errors.Join(ErrStoreUnavailable, errOutageLogged, errors.New("connection refused"))
	store.down.Store(true)
	for i := 0; i < 3; i++ {
		serveRequest(t, ta, formRequest("POST", "/authentication", login))
		serveRequest(t, ta, formRequest("GET", "/authentication/refresh?redirect=%2F", nil, refresh))
		w := serve(t, ta, "POST", "/authentication", `{"strategy":"local","username":"alice","password":"alice-password"}`)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("JSON login, store down: %d", w.Code)
		}
	}
	if n := logs.FilterMessage("request failed").Len(); n != 0 {
		t.Fatalf("an outage the store logged was logged again %d times", n)
	}
}

func TestBrowserStoreDown(t *testing.T) {
	ta, store, logs := inProcessHandler(t)
	login := url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {"/private/"}}

	// a session to refresh and log out of, made while the store is up
	w := serveRequest(t, ta, formRequest("POST", "/authentication", login))
	access, refresh := sessionCookies(w)
	if w.Code != 303 || access == nil || refresh == nil {
		t.Fatalf("login: %d %v", w.Code, w.Header())
	}
	store.down.Store(true)

	// form login: back to the login page saying so, no session cookies
	// (the typed name is kept for the page), logged
	w = serveRequest(t, ta, formRequest("POST", "/authentication", login))
	if a, r := sessionCookies(w); w.Code != 303 || w.Header().Get("Location") != "/authentication?error=unavailable&redirect=%2Fprivate%2F" || a != nil || r != nil {
		t.Errorf("login, store down: %d %v", w.Code, w.Header())
	}
	// refresh: the cookies are kept (the session is not over)
	w = serveRequest(t, ta, formRequest("GET", "/authentication/refresh?redirect=%2Fprivate%2F", nil, refresh))
	if w.Code != 303 || w.Header().Get("Location") != "/authentication?error=unavailable&redirect=%2Fprivate%2F" || len(w.Result().Cookies()) != 0 {
		t.Errorf("refresh, store down: %d %v", w.Code, w.Header())
	}
	// logout: the browser forgets its cookies all the same, the failure is logged
	r := formRequest("POST", "/authentication/logout", url.Values{}, access, refresh)
	w = serveRequest(t, ta, r)
	if w.Code != 303 || len(w.Result().Cookies()) != 2 {
		t.Errorf("logout, store down: %d %v", w.Code, w.Header())
	}
	if n := logs.FilterMessage("request failed").Len(); n != 2 {
		t.Errorf("%d store failures logged for login and refresh, want 2", n)
	}
	if logs.FilterMessage("logout: revoking the session failed").Len() != 1 {
		t.Error("failed revocation not logged")
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, access.Value) || strings.Contains(f.String, refresh.Value) || strings.Contains(f.String, "alice-password") {
				t.Errorf("secret in log line %q: %v", e.Message, f)
			}
		}
	}
}

func TestBrowserErrorCodes(t *testing.T) {
	ta, _, _ := inProcessHandler(t)
	r := httptest.NewRequest("POST", "/authentication", nil)
	for err, want := range map[error]string{
		errInvalidLogin():                "invalid_login",
		errNotAuthenticated():            "invalid_login",
		newAPIError(403, "x"):            "invalid_login",
		newAPIError(429, "slow down"):    "too_many_attempts",
		newAPIError(400, "x"):            "bad_request",
		newAPIError(413, "x"):            "bad_request",
		errStoreDown():                   "unavailable",
		errServerFault():                 "unavailable",
		errors.New("disk on fire"):       "unavailable",
		errors.Join(ErrStoreUnavailable): "unavailable",
	} {
		if got := ta.browserErrorCode(r, err); got != want {
			t.Errorf("%v: %q, want %q", err, got, want)
		}
		if _, ok := loginErrors[want]; !ok {
			t.Errorf("code %q has no message", want)
		}
	}
}

func TestLoginPageRenderFailure(t *testing.T) {
	ta, _, logs := inProcessHandler(t)
	// passes the load-time check (Notice is set there) but fails when it is not
	ta.loginTemplate = template.Must(template.New("login").Parse(`{{if not .Notice}}{{template "missing"}}{{end}}`))
	w := serveRequest(t, ta, httptest.NewRequest("GET", "/authentication", nil))
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"GeneralError"`) {
		t.Errorf("render failure: %d %s", w.Code, w.Body)
	}
	if logs.FilterMessage("rendering login page").Len() != 1 {
		t.Error("render failure not logged")
	}
}

func TestOversizedTokenWarning(t *testing.T) {
	ta, _, logs := inProcessHandler(t)
	ta.Users[0].Claims = map[string]any{"blob": strings.Repeat("x", maxCookieSize)}
	var err error
	if ta.users, err = newUserDirectory(ta.Users, "", ta.logger); err != nil {
		t.Fatal(err)
	}
	w := serveRequest(t, ta, formRequest("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}}))
	if w.Code != 303 {
		t.Fatalf("login: %d", w.Code)
	}
	if logs.FilterMessage("access token too large for a cookie; browsers may drop it: use fewer custom claims").Len() != 1 {
		t.Error("no warning for an access token too large for a cookie")
	}
}

// TestFormLoginAnswersNonHTMLClientsInText: a form post from a client that
// did not ask for HTML (curl -d) gets, with the same 303 and Location, a
// short text saying what happened and where it goes; a browser (Accept
// text/html) gets the bare redirect it follows.
func TestFormLoginAnswersNonHTMLClientsInText(t *testing.T) {
	ta, _, _ := inProcessHandler(t)
	post := func(password, accept string) *httptest.ResponseRecorder {
		r := formRequest("POST", "/authentication", url.Values{"username": {"alice"}, "password": {password}, "redirect": {"/private/"}})
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		return serveRequest(t, ta, r)
	}
	for _, c := range []struct {
		name, password, location string
		says                     []string
	}{
		{"signed in", "alice-password", "/private/", []string{"Signed in as alice", "access_token and refresh_token cookies", "Going on to /private/", "application/json"}},
		{"wrong password", "nope", "/authentication?error=invalid_login&redirect=%2Fprivate%2F", []string{"Not signed in: Wrong username or password", "Going on to /authentication?error=invalid_login"}},
	} {
		w := post(c.password, "*/*")
		body := w.Body.String()
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != c.location || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
			t.Errorf("%s, curl: %d %v", c.name, w.Code, w.Header())
		}
		for _, want := range c.says {
			if !strings.Contains(body, want) {
				t.Errorf("%s, curl: body does not say %q: %q", c.name, want, body)
			}
		}
		if strings.Contains(body, "alice-password") {
			t.Errorf("%s: the body shows the password", c.name)
		}
		if w := post(c.password, "text/html,application/xhtml+xml,*/*;q=0.8"); w.Code != http.StatusSeeOther ||
			w.Header().Get("Location") != c.location || w.Body.Len() != 0 {
			t.Errorf("%s, browser: %d %v %q", c.name, w.Code, w.Header(), w.Body)
		}
	}
}

// TestLoginPageKeepsTypedLoginName: after a wrong password the login page
// shows the user field as typed, HTML-escaped, never the password; the
// name travels in an endpoint-only cookie (not the URL) that the page
// clears; a plain visit fills in nothing.
func TestLoginPageKeepsTypedLoginName(t *testing.T) {
	ta, _, _ := inProcessHandler(t)
	typed := `<script>alert("x")</script>' "al"`
	w := serveRequest(t, ta, formRequest("POST", "/authentication", url.Values{"username": {typed}, "password": {"secret-typed"}}))
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || strings.Contains(loc, "script") || strings.Contains(loc, "username") {
		t.Fatalf("failed login: %d %s", w.Code, loc)
	}
	var remembered *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == loginNameCookieName {
			remembered = c
		}
	}
	if remembered == nil || remembered.Path != "/authentication" || !remembered.HttpOnly || remembered.SameSite != http.SameSiteStrictMode ||
		strings.Contains(remembered.Value, "secret") {
		t.Fatalf("login name cookie: %+v", remembered)
	}
	page := serveRequest(t, ta, formRequest("GET", loc, nil, remembered))
	body := page.Body.String()
	wantValue := `value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39; &#34;al&#34;"`
	if page.Code != http.StatusOK || !strings.Contains(body, wantValue) || strings.Contains(body, "<script>alert") || strings.Contains(body, "secret-typed") {
		t.Fatalf("login page after a wrong password: %d, want %s in\n%s", page.Code, wantValue, body)
	}
	if !strings.Contains(body, `autocomplete="current-password" required autofocus`) {
		t.Errorf("the password field should have the focus when the name is filled in")
	}
	cleared := false
	for _, c := range page.Result().Cookies() {
		cleared = cleared || c.Name == loginNameCookieName && c.MaxAge < 0
	}
	if !cleared {
		t.Errorf("the page did not clear the login name cookie: %v", page.Header()["Set-Cookie"])
	}
	if body := serveRequest(t, ta, formRequest("GET", "/authentication", nil)).Body.String(); !strings.Contains(body, `id="username" name="username" type="text"`) ||
		strings.Contains(body, "value=\"&lt;") {
		t.Errorf("a plain visit shows a name")
	}
}
