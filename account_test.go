package tokenauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// browserSession signs user in with the password form and returns the
// cookies a browser would keep.
func browserSession(t *testing.T, ta *TokenAuth, user, password string) []*http.Cookie {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}, "redirect": {"/"}}
	w := serveTeapot(t, ta, pkRequest("POST", "/authentication", form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "Origin", pkSite))
	if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 2 {
		t.Fatalf("form login: %d %v", w.Code, w.Header())
	}
	return w.Result().Cookies()
}

func withCookies(r *http.Request, cookies []*http.Cookie) *http.Request {
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func accountPage(t *testing.T, ta *TokenAuth, cookies []*http.Cookie, query string) *httptest.ResponseRecorder {
	t.Helper()
	return serveTeapot(t, ta, withCookies(pkRequest("GET", "/authentication/account"+query, "", "Accept", "text/html"), cookies))
}

func accountForm(t *testing.T, ta *TokenAuth, cookies []*http.Cookie, origin string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	r := pkRequest("POST", "/authentication/account", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return serveTeapot(t, ta, withCookies(r, cookies))
}

func cookieOf(cookies []*http.Cookie, name string) string {
	for _, c := range cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func TestAccountPageNeedsSignIn(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	w := accountPage(t, ta, nil, "")
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/authentication?redirect=%2Fauthentication%2Faccount" {
		t.Fatalf("signed out: %d %v", w.Code, w.Header())
	}
	w = accountForm(t, ta, nil, pkSite, url.Values{"action": {"sign_out_everywhere"}})
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "error=session_expired") {
		t.Fatalf("form signed out: %d %v", w.Code, w.Header())
	}
}

func TestAccountPage(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	here := browserSession(t, ta, "alice", "alice-pw")
	elsewhere := browserSession(t, ta, "alice", "alice-pw")
	a := newSoftAuthenticator(t)
	info := addPasskey(t, ta, cookieOf(here, accessCookieName), a, "Phone <b>")

	w := accountPage(t, ta, here, "")
	body := w.Body.String()
	if w.Code != 200 {
		t.Fatalf("account page: %d %s", w.Code, body)
	}
	hereSID := mustClaims(t, ta, here).SID
	for _, want := range []string{"Alice", "Phone &lt;b&gt;", `data-passkey="` + info.ID + `"`, "last used never",
		`data-session="` + hereSID + `"`, `data-session="` + mustClaims(t, ta, elsewhere).SID + `"`, "this browser",
		`id="passkey-add-form"`, "Sign out everywhere", `<script src="/authentication/passkeys.js"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("account page lacks %q:\n%s", want, body)
		}
	}
	if strings.Count(body, "this browser") != 1 {
		t.Fatal("more than one session marked as this one")
	}
	if strings.Contains(body, "Second factors") {
		t.Fatal("a second-factor section without any second factor")
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}

	// forms only from this site
	for _, origin := range []string{"", "https://evil.example"} {
		if w := accountForm(t, ta, here, origin, url.Values{"action": {"sign_out_everywhere"}}); w.Code != http.StatusForbidden {
			t.Fatalf("form from %q: %d", origin, w.Code)
		}
	}

	// sign out the other session
	w = accountForm(t, ta, here, pkSite, url.Values{"action": {"sign_out"}, "sid": {mustClaims(t, ta, elsewhere).SID}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/authentication/account?notice=session_ended" {
		t.Fatalf("sign out one: %d %v", w.Code, w.Header())
	}
	if w := accountPage(t, ta, elsewhere, ""); w.Code != http.StatusFound {
		t.Fatalf("the signed-out session still sees the page: %d", w.Code)
	}
	if body := accountPage(t, ta, here, "?notice=session_ended").Body.String(); strings.Count(body, "data-session=") != 1 || !strings.Contains(body, "signed out") {
		t.Fatalf("after signing one out:\n%s", body)
	}

	// remove the passkey (alice has a password: no confirmation)
	w = accountForm(t, ta, here, pkSite, url.Values{"action": {"remove_passkey"}, "id": {info.ID}})
	if w.Header().Get("Location") != "/authentication/account?notice=passkey_removed" {
		t.Fatalf("remove passkey: %d %v", w.Code, w.Header())
	}
	wantInvalidLogin(t, signInWith(t, ta, a), "removed passkey")
	w = accountForm(t, ta, here, pkSite, url.Values{"action": {"remove_passkey"}, "id": {info.ID}})
	if w.Header().Get("Location") != "/authentication/account?error=not_found" {
		t.Fatalf("remove again: %v", w.Header())
	}

	// another user's session is not found
	bob := browserSession(t, ta, "bob", "bob-pw")
	w = accountForm(t, ta, here, pkSite, url.Values{"action": {"sign_out"}, "sid": {mustClaims(t, ta, bob).SID}})
	if w.Header().Get("Location") != "/authentication/account?error=not_found" {
		t.Fatalf("bob's session: %v", w.Header())
	}
	if w := accountPage(t, ta, bob, ""); w.Code != 200 {
		t.Fatal("bob was signed out by alice")
	}

	// sign out everywhere: cookies cleared, every session ended
	again := browserSession(t, ta, "alice", "alice-pw")
	w = accountForm(t, ta, here, pkSite, url.Values{"action": {"sign_out_everywhere"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/authentication?notice=signed_out" || cookieOf(w.Result().Cookies(), accessCookieName) != "" {
		t.Fatalf("sign out everywhere: %d %v", w.Code, w.Header())
	}
	for _, c := range [][]*http.Cookie{here, again} {
		if w := accountPage(t, ta, c, ""); w.Code != http.StatusFound {
			t.Fatalf("still signed in after signing out everywhere: %d", w.Code)
		}
	}
}

// TestAccountPageLastPasskey: removing the only passkey of an account
// without a password asks first.
func TestAccountPageLastPasskey(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	c := newSoftAuthenticator(t)
	access := inviteAndRegister(t, ta, "carol", c)
	cookies := []*http.Cookie{{Name: accessCookieName, Value: access}}
	id := b64url.EncodeToString(c.credID)

	w := accountForm(t, ta, cookies, pkSite, url.Values{"action": {"remove_passkey"}, "id": {id}})
	if w.Header().Get("Location") != "/authentication/account?confirm="+id {
		t.Fatalf("first removal: %v", w.Header())
	}
	body := accountPage(t, ta, cookies, "?confirm="+id).Body.String()
	if !strings.Contains(body, "is your only passkey") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("no confirmation asked:\n%s", body)
	}
	if w := signInWith(t, ta, c); w.Code != http.StatusCreated {
		t.Fatal("the passkey was removed before confirmation")
	}
	w = accountForm(t, ta, cookies, pkSite, url.Values{"action": {"remove_passkey"}, "id": {id}, "confirm": {"yes"}})
	if w.Header().Get("Location") != "/authentication/account?notice=passkey_removed" {
		t.Fatalf("confirmed removal: %v", w.Header())
	}
	wantInvalidLogin(t, signInWith(t, ta, c), "removed last passkey")
}

// TestSessionsAPI: the JSON twins list and end one's own sessions only.
func TestSessionsAPI(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	alice := passwordAccess(t, ta, "alice", "alice-pw")
	other := passwordAccess(t, ta, "alice", "alice-pw")
	bob := passwordAccess(t, ta, "bob", "bob-pw")

	w := pkDo(t, ta, "GET", "/authentication/sessions", "", bearer(alice)...)
	var list struct{ Sessions []adminSession }
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 || len(list.Sessions) != 2 {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	for _, s := range list.Sessions {
		if s.User != "alice" || s.Created == "" || s.Expires == "" {
			t.Fatalf("session %+v", s)
		}
	}
	bobSID, _ := ta.tokens.verifyAccess(bob)
	if w := pkDo(t, ta, "DELETE", "/authentication/sessions/"+bobSID.SID, "", bearer(alice)...); w.Code != http.StatusNotFound {
		t.Fatalf("ending bob's session: %d", w.Code)
	}
	if w := pkDo(t, ta, "DELETE", "/authentication/sessions/nope", "", bearer(alice)...); w.Code != http.StatusNotFound {
		t.Fatalf("ending no session: %d", w.Code)
	}
	otherSID, _ := ta.tokens.verifyAccess(other)
	if w := pkDo(t, ta, "DELETE", "/authentication/sessions/"+otherSID.SID, "", bearer(alice)...); w.Code != http.StatusOK {
		t.Fatalf("ending own session: %d %s", w.Code, w.Body)
	}
	if w := pkDo(t, ta, "GET", "/authentication/sessions", "", bearer(other)...); w.Code != http.StatusUnauthorized {
		t.Fatalf("the ended session still lists: %d", w.Code)
	}
	if w := pkDo(t, ta, "GET", "/authentication/sessions", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", w.Code)
	}
	if w := pkDo(t, ta, "POST", "/authentication/sessions", "{}", bearer(alice)...); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
}

func mustClaims(t *testing.T, ta *TokenAuth, cookies []*http.Cookie) *accessClaims {
	t.Helper()
	c, err := ta.tokens.verifyAccess(cookieOf(cookies, accessCookieName))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
