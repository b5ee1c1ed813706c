package tokenauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// adminInvite asks the admin API route for an invitation.
func adminInvite(t *testing.T, realm, body string) (*httptest.ResponseRecorder, error) {
	t.Helper()
	a := &adminAPI{logger: zap.NewNop()}
	r := httptest.NewRequest("POST", "http://localhost:2019/token_auth/"+url.PathEscape(realm)+"/invites", strings.NewReader(body))
	w := httptest.NewRecorder()
	return w, a.serve(w, r)
}

// invite makes an invitation for user and returns the link's path.
func invite(t *testing.T, ta *TokenAuth, user string) string {
	t.Helper()
	w, err := adminInvite(t, ta.Realm, `{"user":"`+user+`","origin":"`+pkSite+`"}`)
	if err != nil || w.Code != http.StatusCreated {
		t.Fatalf("invite: %v %d %s", err, w.Code, w.Body)
	}
	var res struct{ URL, Expires string }
	_ = json.Unmarshal(w.Body.Bytes(), &res)
	exp, err := time.Parse(time.RFC3339, res.Expires)
	if err != nil || exp.Sub(time.Now()) < 23*time.Hour || exp.Sub(time.Now()) > 24*time.Hour {
		t.Fatalf("expires %q", res.Expires)
	}
	path, ok := strings.CutPrefix(res.URL, pkSite+"/authentication/invite/")
	if !ok || len(path) < 20 {
		t.Fatalf("invitation url %q", res.URL)
	}
	return "/authentication/invite/" + path
}

// inviteAndRegister opens an invitation for user, registers a's passkey
// through it and returns the access token of the session it signs in.
func inviteAndRegister(t *testing.T, ta *TokenAuth, user string, a *softAuthenticator) string {
	t.Helper()
	link := invite(t, ta, user)
	w := redeemInvitation(t, ta, link, a)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/authentication/account?notice=passkey_added" {
		t.Fatalf("redeeming: %d %v", w.Code, w.Header())
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == accessCookieName {
			return c.Value
		}
	}
	t.Fatal("no access cookie")
	return ""
}

func redeemInvitation(t *testing.T, ta *TokenAuth, link string, a *softAuthenticator) *httptest.ResponseRecorder {
	t.Helper()
	w := pkDo(t, ta, "POST", link+"/options", "{}", "Origin", pkSite)
	if w.Code != http.StatusOK {
		t.Fatalf("invite options: %d %s", w.Code, w.Body)
	}
	cred := a.register(w.Body.Bytes(), pkSite, "")
	return postInviteForm(t, ta, link, cred)
}

func postInviteForm(t *testing.T, ta *TokenAuth, link string, cred json.RawMessage) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"credential": {string(cred)}}
	return serveTeapot(t, ta, pkRequest("POST", link, form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "Origin", pkSite))
}

func TestInvitation(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	link := invite(t, ta, "carol")

	page := pkDo(t, ta, "GET", link, "", "Accept", "text/html")
	if page.Code != 200 || !strings.Contains(page.Body.String(), `id="invite-button"`) || !strings.Contains(page.Body.String(), "carol") {
		t.Fatalf("invite page: %d %s", page.Code, page.Body)
	}

	// a bad answer leaves the invitation usable
	w := pkDo(t, ta, "POST", link+"/options", "{}", "Origin", pkSite)
	bad := newSoftAuthenticator(t).register(w.Body.Bytes(), "http://evil.localhost:8080", "")
	if w := postInviteForm(t, ta, link, bad); w.Code != http.StatusSeeOther || w.Header().Get("Location") != link+"?error=1" {
		t.Fatalf("bad answer: %d %v", w.Code, w.Header())
	}
	if w := pkDo(t, ta, "GET", link+"?error=1", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "could not be created") {
		t.Fatalf("after a bad answer: %d", w.Code)
	}

	// a good one signs carol in, once
	c := newSoftAuthenticator(t)
	w = redeemInvitation(t, ta, link, c)
	if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 2 {
		t.Fatalf("redeeming: %d %v", w.Code, w.Header())
	}
	access := w.Result().Cookies()[0].Value
	claims, err := ta.tokens.verifyAccess(access)
	if err != nil || claims.Subject != "carol" || claims.AMR[0] != "hwk" {
		t.Fatalf("signed in as %+v (%v)", claims, err)
	}
	if w := signInWith(t, ta, c); w.Code != http.StatusCreated {
		t.Fatalf("carol's passkey: %d %s", w.Code, w.Body)
	}

	// used: a clear page, and no second passkey through it
	gone := pkDo(t, ta, "GET", link, "", "Accept", "text/html")
	if gone.Code != http.StatusGone || !strings.Contains(gone.Body.String(), "no longer valid") {
		t.Fatalf("used invitation: %d %s", gone.Code, gone.Body)
	}
	if w := pkDo(t, ta, "POST", link+"/options", "{}", "Origin", pkSite); w.Code != http.StatusNotFound {
		t.Fatalf("options of a used invitation: %d", w.Code)
	}

	// two answers racing for one invitation: one wins
	link = invite(t, ta, "carol")
	first := pkDo(t, ta, "POST", link+"/options", "{}", "Origin", pkSite).Body.Bytes()
	second := pkDo(t, ta, "POST", link+"/options", "{}", "Origin", pkSite).Body.Bytes()
	if w := postInviteForm(t, ta, link, newSoftAuthenticator(t).register(first, pkSite, "")); w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 2 {
		t.Fatalf("first: %d", w.Code)
	}
	if w := postInviteForm(t, ta, link, newSoftAuthenticator(t).register(second, pkSite, "")); w.Header().Get("Location") != link+"?error=1" {
		t.Fatalf("second redemption: %d %v", w.Code, w.Header())
	}

	// expired
	link = invite(t, ta, "carol")
	ta.now = func() time.Time { return time.Now().Add(inviteTTL + time.Minute) }
	if w := pkDo(t, ta, "GET", link, ""); w.Code != http.StatusGone {
		t.Fatalf("expired invitation: %d", w.Code)
	}
	ta.now = time.Now

	// from another site's page: refused
	if w := pkDo(t, ta, "POST", link+"/options", "{}", "Origin", "https://evil.example"); w.Code != http.StatusForbidden {
		t.Fatalf("cross-origin: %d", w.Code)
	}
}

func TestInviteAdminErrors(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	for _, c := range []struct {
		realm, body string
		status      int
	}{
		{ta.Realm, `{"user":"mallory","origin":"https://x.example"}`, http.StatusNotFound},
		{"no-such-realm", `{"user":"carol"}`, http.StatusNotFound},
		{ta.Realm, `{}`, http.StatusBadRequest},
		{ta.Realm, `not json`, http.StatusBadRequest},
		{ta.Realm, `{"user":"carol"}`, http.StatusBadRequest}, // no origin known
		{ta.Realm, `{"user":"carol","origin":"ftp://x"}`, http.StatusBadRequest},
	} {
		_, err := adminInvite(t, c.realm, c.body)
		var apiErr caddy.APIError
		if !asAPIError(err, &apiErr) || apiErr.HTTPStatus != c.status {
			t.Fatalf("%s %s: %v, want %d", c.realm, c.body, err, c.status)
		}
	}
	// with rp_id set, the link points to it
	fixed, _ := passkeyHandler(t, &PasskeysConfig{RPID: "example.com"})
	w, err := adminInvite(t, fixed.Realm, `{"user":"carol"}`)
	if err != nil || !strings.Contains(w.Body.String(), `"url":"https://example.com/authentication/invite/`) {
		t.Fatalf("%v %s", err, w.Body)
	}
}

func asAPIError(err error, dst *caddy.APIError) bool {
	e, ok := err.(caddy.APIError)
	if ok {
		*dst = e
	}
	return ok
}

// TestInviteCommand: `caddy token-auth-users invite` asks the admin API
// and prints the link.
func TestInviteCommand(t *testing.T) {
	ta, _ := passkeyHandler(t, &PasskeysConfig{Origins: []string{"https://login.example.com"}})
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := &adminAPI{logger: zap.NewNop()}
		if err := a.serve(w, r); err != nil {
			e := err.(caddy.APIError)
			http.Error(w, e.Err.Error(), e.HTTPStatus)
		}
	}))
	defer admin.Close()
	var out bytes.Buffer
	if err := requestInvite(&out, strings.TrimPrefix(admin.URL, "http://"), ta.Realm, "carol", ""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "https://login.example.com/authentication/invite/") || !strings.Contains(out.String(), "single use") {
		t.Fatalf("printed %q", out.String())
	}
	if err := requestInvite(&out, strings.TrimPrefix(admin.URL, "http://"), ta.Realm, "mallory", ""); err == nil || !strings.Contains(err.Error(), "mallory") {
		t.Fatalf("unknown user: %v", err)
	}
}
