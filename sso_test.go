package tokenauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Three sites of one realm, as three token_auth handlers sharing the
// realm's (memory) store: the portal login.test and the sites a.test and
// b.test, all over plain HTTP.
const (
	ssoPortalOrigin = "http://login.test"
	ssoSiteA        = "http://a.test"
	ssoSiteB        = "http://b.test"
)

type ssoRealm struct {
	t        *testing.T
	handlers map[string]*TokenAuth // by host
}

func newSSORealm(t *testing.T) *ssoRealm {
	t.Helper()
	realm := "sso-" + strings.ReplaceAll(t.Name(), "/", "-")
	alice := User{ID: "alice", Password: testenv.Hash(t, "alice-password"), Email: "alice@example.com"}
	sr := &ssoRealm{t: t, handlers: map[string]*TokenAuth{}}
	for _, origin := range []string{ssoPortalOrigin, ssoSiteA, ssoSiteB} {
		ta := hs256Config(realm, alice)
		ta.SSO = &SSOConfig{Portal: ssoPortalOrigin, Sites: []string{ssoSiteA, ssoSiteB}}
		provisionInProcess(t, ta)
		sr.handlers[strings.TrimPrefix(origin, "http://")] = ta
	}
	return sr
}

func (sr *ssoRealm) at(origin string) *TokenAuth {
	return sr.handlers[strings.TrimPrefix(origin, "http://")]
}

// ssoBrowser keeps cookies per host, as a browser does, and follows
// redirects across the three sites. The guarded page answers 418 with the
// sso_portal placeholder in a header.
type ssoBrowser struct {
	t     *testing.T
	realm *ssoRealm
	jar   *cookiejar.Jar
}

func (sr *ssoRealm) browser() *ssoBrowser {
	jar, _ := cookiejar.New(nil)
	return &ssoBrowser{t: sr.t, realm: sr, jar: jar}
}

// do sends one request (a navigation: Accept text/html) and keeps the
// cookies it sets.
func (b *ssoBrowser) do(method, rawURL string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		b.t.Fatal(err)
	}
	ta := b.realm.handlers[u.Host]
	if ta == nil {
		b.t.Fatalf("no site %s (from %s)", u.Host, rawURL)
	}
	var body string
	if form != nil {
		body = form.Encode()
	}
	r := httptest.NewRequest(method, rawURL, strings.NewReader(body))
	r.Header.Set("Accept", "text/html")
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", u.Scheme+"://"+u.Host)
	}
	for _, c := range b.jar.Cookies(u) {
		r.AddCookie(c)
	}
	r, repl := asCaddyRequest(r, "10.0.0.7")
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("X-User", repl.ReplaceAll("{http.auth.user.id}", ""))
		w.Header().Set("X-SSO-Portal", repl.ReplaceAll("{http.auth.user.sso_portal}", ""))
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := ta.ServeHTTP(w, r, next); err != nil {
		b.t.Fatalf("ServeHTTP %s: %v", rawURL, err)
	}
	b.jar.SetCookies(u, w.Result().Cookies())
	return w
}

// follow GETs rawURL and follows redirects until an answer that is not
// one, or until stop says to stop at a location; it returns the last
// answer, its URL and every URL visited.
func (b *ssoBrowser) follow(rawURL string, stop func(location string) bool) (*httptest.ResponseRecorder, string, []string) {
	b.t.Helper()
	chain := []string{rawURL}
	for range 12 {
		w := b.do("GET", rawURL, nil)
		if w.Code != http.StatusFound && w.Code != http.StatusSeeOther {
			return w, rawURL, chain
		}
		next := b.resolve(rawURL, w.Header().Get("Location"))
		if stop != nil && stop(next) {
			return w, next, chain
		}
		rawURL = next
		chain = append(chain, rawURL)
	}
	b.t.Fatalf("redirect loop: %v", chain)
	return nil, "", nil
}

func (b *ssoBrowser) resolve(base, location string) string {
	bu, _ := url.Parse(base)
	lu, err := url.Parse(location)
	if err != nil {
		b.t.Fatalf("bad Location %q", location)
	}
	return bu.ResolveReference(lu).String()
}

// signInAt opens a site's private page, signs in at the portal's login
// page and follows through to the page; it returns the chain of URLs.
func (b *ssoBrowser) signInAt(site string) []string {
	b.t.Helper()
	w, loginURL, chain := b.follow(site+"/private", nil)
	if w.Code != http.StatusOK || !strings.HasPrefix(loginURL, ssoPortalOrigin+"/authentication?") {
		b.t.Fatalf("want the portal's login page, got %d at %s (chain %v)", w.Code, loginURL, chain)
	}
	lu, _ := url.Parse(loginURL)
	form := url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {lu.Query().Get("redirect")}}
	w = b.do("POST", ssoPortalOrigin+"/authentication", form)
	if w.Code != http.StatusSeeOther {
		b.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	w, final, rest := b.follow(b.resolve(ssoPortalOrigin, w.Header().Get("Location")), nil)
	if w.Code != http.StatusTeapot || final != site+"/private" {
		b.t.Fatalf("after signing in: %d at %s (chain %v)", w.Code, final, rest)
	}
	return append(chain, rest...)
}

// callbackURL signs in at the portal if needed and returns the site
// callback the portal sends the browser to, without following it.
func (b *ssoBrowser) callbackURL(site string) string {
	b.t.Helper()
	isCallback := func(loc string) bool { return strings.Contains(loc, "/authentication/sso/callback?") }
	_, loc, _ := b.follow(site+"/private", isCallback)
	if isCallback(loc) {
		return loc
	}
	lu, _ := url.Parse(loc)
	form := url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {lu.Query().Get("redirect")}}
	w := b.do("POST", ssoPortalOrigin+"/authentication", form)
	_, loc, _ = b.follow(b.resolve(ssoPortalOrigin, w.Header().Get("Location")), isCallback)
	if !isCallback(loc) || !strings.HasPrefix(loc, site+"/") {
		b.t.Fatalf("no callback to %s: stopped at %s", site, loc)
	}
	return loc
}

func (b *ssoBrowser) cookie(origin, name string) string {
	u, _ := url.Parse(origin + "/authentication/sso/callback") // within every cookie's path
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// claims are the verified claims of the browser's access cookie at origin.
func (b *ssoBrowser) claims(origin string) *accessClaims {
	b.t.Helper()
	return mustClaims(b.t, b.realm.at(origin), []*http.Cookie{{Name: accessCookieName, Value: b.cookie(origin, accessCookieName)}})
}

// assertRefused checks a refused callback: a 400 page and no session.
func assertRefused(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "Sign-in could not be completed") {
		t.Fatalf("want the 400 refusal page, got %d %s", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == accessCookieName || c.Name == refreshCookieName {
			t.Fatalf("a refused callback set %s", c.Name)
		}
	}
}

func ssoCount(realm, result string) float64 {
	return testutil.ToFloat64(tokenAuthMetrics.sso.WithLabelValues(realm, result))
}

// TestSSOSignInAcrossSites: a site's private page sends the browser to
// the portal, whose login page signs it in and hands a code back; the
// site opens its own session, linked to the portal's with the same amr
// and auth_time, and sets host-only cookies. The second site then needs
// no login page at all, and the placeholder names the portal.
func TestSSOSignInAcrossSites(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	realm := sr.at(ssoSiteA).Realm
	chain := b.signInAt(ssoSiteA)
	if !strings.HasPrefix(chain[1], ssoPortalOrigin+"/authentication/sso?") {
		t.Fatalf("the site did not send the browser to the portal: %v", chain)
	}
	if got := b.cookie(ssoSiteA, accessCookieName); got == "" || b.cookie(ssoSiteB, accessCookieName) != "" {
		t.Fatal("want cookies at a.test only")
	}

	w, final, chain := b.follow(ssoSiteB+"/private", nil)
	if w.Code != http.StatusTeapot || final != ssoSiteB+"/private" {
		t.Fatalf("site B: %d at %s (chain %v)", w.Code, final, chain)
	}
	for _, u := range chain {
		if strings.Contains(u, "/authentication?") {
			t.Fatalf("site B showed a login page: %v", chain)
		}
	}
	if got := w.Header().Get("X-SSO-Portal"); got != ssoPortalOrigin {
		t.Fatalf("{http.auth.user.sso_portal} = %q, want %q", got, ssoPortalOrigin)
	}
	if got := w.Header().Get("X-User"); got != "alice" {
		t.Fatalf("user %q", got)
	}

	portal := b.claims(ssoPortalOrigin)
	site := b.claims(ssoSiteB)
	if site.SID == portal.SID || strings.Join(site.AMR, ",") != strings.Join(portal.AMR, ",") || !site.AuthTime.Equal(portal.AuthTime.Time) {
		t.Fatalf("site session %s amr %v auth_time %v; portal %s amr %v auth_time %v", site.SID, site.AMR, site.AuthTime, portal.SID, portal.AMR, portal.AuthTime)
	}
	if _, ok := portal.Extra["sso_portal"]; ok {
		t.Fatal("the portal's own session claims sso_portal")
	}
	s, err := sr.at(ssoSiteB).realm.store.Get(context.Background(), site.SID)
	if err != nil || s.Parent != portal.SID {
		t.Fatalf("site session parent %q (%v), want %s", s.Parent, err, portal.SID)
	}
	if ssoCount(realm, "issued") != 2 || ssoCount(realm, "redeemed") != 2 {
		t.Fatalf("issued %v redeemed %v, want 2 and 2", ssoCount(realm, "issued"), ssoCount(realm, "redeemed"))
	}
}

// TestSSOSiteLoginPageGoesToThePortal: a site's own login page sends the
// browser to the portal, with the page it was for.
func TestSSOSiteLoginPageGoesToThePortal(t *testing.T) {
	sr := newSSORealm(t)
	w := sr.browser().do("GET", ssoSiteA+"/authentication?redirect=%2Fdocs%3Fx%3D1", nil)
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || loc.Host != "login.test" || loc.Query().Get("return_to") != ssoSiteA+"/docs?x=1" {
		t.Fatalf("got %d %s", w.Code, loc)
	}
	// the portal's own login page is the login page; its forms may end at
	// a site (browsers apply form-action to the redirects after a form)
	w = sr.browser().do("GET", ssoPortalOrigin+"/authentication", nil)
	if csp := w.Header().Get("Content-Security-Policy"); w.Code != http.StatusOK || !strings.Contains(csp, "form-action 'self' "+ssoSiteA+" "+ssoSiteB+";") {
		t.Fatalf("portal login page: %d, CSP %q", w.Code, csp)
	}
}

// TestSSOLogoutAPI: DELETE {endpoint} with a site's Bearer token revokes
// the family too.
func TestSSOLogoutAPI(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	b.signInAt(ssoSiteA)
	b.follow(ssoSiteB+"/private", nil)
	w := serveTeapot(t, sr.at(ssoSiteA), pkRequest("DELETE", "/authentication", "", "Authorization", "Bearer "+b.cookie(ssoSiteA, accessCookieName)))
	if w.Code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	for _, page := range []string{ssoPortalOrigin + "/private", ssoSiteB + "/private"} {
		if w := b.do("GET", page, nil); w.Code == http.StatusTeapot {
			t.Fatalf("%s still open", page)
		}
	}
}

// TestSSOCodeReplay: a code is redeemed once; the same callback again is
// refused with the page, sets no cookie, and is counted.
func TestSSOCodeReplay(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	cb := b.callbackURL(ssoSiteA)
	if w := b.do("GET", cb, nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/private" {
		t.Fatalf("first redemption: %d %s", w.Code, w.Header().Get("Location"))
	}
	before := ssoCount(sr.at(ssoSiteA).Realm, "invalid_code")
	assertRefused(t, b.do("GET", cb, nil))
	if ssoCount(sr.at(ssoSiteA).Realm, "invalid_code") != before+1 {
		t.Fatal("the replay was not counted")
	}
}

// TestSSOExpiredCode: a code older than 60 s is refused, even when the
// store still holds it.
func TestSSOExpiredCode(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	cb := b.callbackURL(ssoSiteA)
	site := sr.at(ssoSiteA)
	site.now = func() time.Time { return time.Now().Add(ssoCodeTTL + time.Second) }
	assertRefused(t, b.do("GET", cb, nil))
	if ssoCount(site.Realm, "expired_code") != 1 {
		t.Fatal("not counted as expired_code")
	}
}

// TestSSOCodeForAnotherSite: a code the portal issued for site A is
// refused at site B (even by the same browser), and is dead for A too.
func TestSSOCodeForAnotherSite(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	cb := b.callbackURL(ssoSiteA)
	core, logs := observer.New(zap.InfoLevel)
	sr.at(ssoSiteB).logger = zap.New(core)
	atB := strings.Replace(cb, ssoSiteA, ssoSiteB, 1)
	assertRefused(t, b.do("GET", atB, nil))
	if ssoCount(sr.at(ssoSiteB).Realm, "wrong_site") != 1 {
		t.Fatal("not counted as wrong_site")
	}
	refused := logs.FilterMessage("sso code refused").All()
	if len(refused) != 1 || refused[0].ContextMap()["reason"] != "wrong_site" || refused[0].ContextMap()["site"] != ssoSiteB ||
		strings.Contains(fmt.Sprint(refused[0].ContextMap()), cb[strings.Index(cb, "code=")+5:][:20]) {
		t.Fatalf("log lines %v", logs.All())
	}
	assertRefused(t, b.do("GET", cb, nil))
	// the portal is not a site either
	assertRefused(t, b.do("GET", strings.Replace(cb, ssoSiteA, ssoPortalOrigin, 1), nil))
}

// TestSSOForgedState: the state binds the round trip to the browser that
// started it. An attacker's own code and state, opened in a victim's
// browser (login CSRF), are refused; so is a code with another state.
func TestSSOForgedState(t *testing.T) {
	sr := newSSORealm(t)
	attacker := sr.browser()
	cb := attacker.callbackURL(ssoSiteA)

	victim := sr.browser()
	victim.follow(ssoSiteA+"/private", nil) // the victim has a binding cookie of its own
	if victim.cookie(ssoSiteA, ssoBindingCookie) == "" {
		t.Fatal("no binding cookie")
	}
	assertRefused(t, victim.do("GET", cb, nil))
	if ssoCount(sr.at(ssoSiteA).Realm, "bad_state") != 1 {
		t.Fatal("not counted as bad_state")
	}
	if victim.cookie(ssoSiteA, accessCookieName) != "" {
		t.Fatal("the victim was signed in as the attacker")
	}

	// the attacker's own browser, with the state changed
	cb = attacker.callbackURL(ssoSiteA)
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("state", ssoState(attacker.cookie(ssoSiteA, ssoBindingCookie), randomID()))
	u.RawQuery = q.Encode()
	assertRefused(t, attacker.do("GET", u.String(), nil))
	// a state the portal refuses outright
	w := attacker.do("GET", ssoPortalOrigin+"/authentication/sso?"+url.Values{"return_to": {ssoSiteA + "/"}, "state": {"x"}}.Encode(), nil)
	assertRefused(t, w)
}

// TestSSOReturnToOffList: return_to must be an absolute URL on one of
// sites; anything else (another host, scheme-relative, userinfo tricks,
// backslashes, control characters) sends the browser to the portal's /
// and issues no code.
func TestSSOReturnToOffList(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	b.signInAt(ssoSiteA)
	state := ssoState(randomID(), randomID())
	realm := sr.at(ssoPortalOrigin).Realm
	issued := ssoCount(realm, "issued")
	for _, rt := range []string{
		"https://evil.example/",
		"//evil",
		"//a.test/private",
		"https://portal@evil.example/",
		"http://a.test@evil.example/",
		"http://a.test:pw@evil.example/",
		`https:\\evil`,
		`http://a.test\@evil.example/`,
		"http://evil.example#@a.test",
		"http://evil.example?@a.test",
		"http://a.test.evil.example/",
		"https://a.test/",      // another scheme: another origin
		"http://a.test:8080/",  // another port
		"http://login.test/",   // the portal is not a site
		"http://a.test/\t/x",   // control character
		"/private",             // a path: not absolute
		"javascript:alert(1)",  // a pseudo-scheme
		"http:/a.test/private", // no authority
		"",
	} {
		w := b.do("GET", ssoPortalOrigin+"/authentication/sso?"+url.Values{"return_to": {rt}, "state": {state}}.Encode(), nil)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
			t.Errorf("return_to %q: %d to %q, want 303 to /", rt, w.Code, w.Header().Get("Location"))
		}
	}
	if ssoCount(realm, "issued") != issued {
		t.Fatal("a code was issued for an off-list return_to")
	}
	// the sanitizer keeps a good one, path and query
	if origin, path, ok := sr.at(ssoPortalOrigin).SSO.ssoReturnTarget("http://A.test:80/p/q?x=1#frag"); !ok || origin != ssoSiteA || path != "/p/q?x=1" {
		t.Fatalf("good return_to: %q %q %v", origin, path, ok)
	}
}

// TestSSOSingleLogout: signing out at one site revokes the portal
// session and every sibling site session: the next page load anywhere
// shows the (portal's) login page. scope=global still means every
// session of the user, linked or not.
func TestSSOSingleLogout(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	b.signInAt(ssoSiteA)
	if w, _, _ := b.follow(ssoSiteB+"/private", nil); w.Code != http.StatusTeapot {
		t.Fatalf("site B: %d", w.Code)
	}
	if w := b.do("GET", ssoPortalOrigin+"/private", nil); w.Code != http.StatusTeapot {
		t.Fatalf("portal: %d", w.Code)
	}

	w := b.do("POST", ssoSiteB+"/authentication/logout", url.Values{})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", w.Code)
	}
	for _, page := range []string{ssoSiteA + "/private", ssoPortalOrigin + "/private", ssoSiteB + "/private"} {
		w, final, chain := b.follow(page, nil)
		if w.Code != http.StatusOK || !strings.HasPrefix(final, ssoPortalOrigin+"/authentication?") {
			t.Fatalf("%s after logout: %d at %s (chain %v)", page, w.Code, final, chain)
		}
	}
	assertAllRevoked(t, sr.at(ssoSiteA).realm.store, "alice", 3)
}

// assertAllRevoked checks that user has exactly n sessions, all revoked.
func assertAllRevoked(t *testing.T, store Store, user string, n int) {
	t.Helper()
	sessions, err := store.ListUser(context.Background(), user)
	if err != nil || len(sessions) != n {
		t.Fatalf("sessions %v %v, want %d", sessions, err, n)
	}
	for _, s := range sessions {
		if !s.Revoked {
			t.Fatalf("session %s (parent %q) is live", s.ID, s.Parent)
		}
	}
}

// TestSSOPortalRevocationRevokesFamily: revoking the portal session (the
// admin API's path) revokes its site sessions; reuse detection at a site
// revokes the family too; other sessions of the user are untouched.
func TestSSOPortalRevocationRevokesFamily(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	b.signInAt(ssoSiteA)
	b.follow(ssoSiteB+"/private", nil)
	other := sr.browser()
	other.signInAt(ssoSiteA) // a second family of the same user
	ctx := context.Background()
	portal := sr.at(ssoPortalOrigin)
	claims := b.claims(ssoPortalOrigin)
	ids, err := portal.realm.revoke(ctx, revocation{sid: claims.SID})
	if err != nil || len(ids) != 3 {
		t.Fatalf("revoked %v (%v), want the portal session and two site sessions", ids, err)
	}
	for _, page := range []string{ssoSiteA + "/private", ssoSiteB + "/private"} {
		if w := b.do("GET", page, nil); w.Code == http.StatusTeapot {
			t.Fatalf("%s still open after the portal session was revoked", page)
		}
	}
	if w := other.do("GET", ssoSiteA+"/private", nil); w.Code != http.StatusTeapot {
		t.Fatalf("another family was revoked: %d", w.Code)
	}

	// reuse of a site session's refresh token revokes its whole family
	siteA := sr.at(ssoSiteA)
	refresh := other.cookie(ssoSiteA, refreshCookieName)
	next, err := siteA.refresh(pkRequest("POST", "/authentication", ""), refresh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := siteA.refresh(pkRequest("POST", "/authentication", ""), next.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := siteA.refresh(pkRequest("POST", "/authentication", ""), refresh); err == nil {
		t.Fatal("reuse accepted") // two generations old: reuse, beyond any grace
	}
	if w := other.do("GET", ssoPortalOrigin+"/private", nil); w.Code == http.StatusTeapot {
		t.Fatal("the portal session survived reuse at a site")
	}
}

// TestSSOLinkAfterPortalRevoked: a code whose portal session was revoked
// before redemption opens no session.
func TestSSOLinkAfterPortalRevoked(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	cb := b.callbackURL(ssoSiteA)
	portal := sr.at(ssoPortalOrigin)
	claims := b.claims(ssoPortalOrigin)
	if err := portal.revokeSession(context.Background(), claims.SID); err != nil {
		t.Fatal(err)
	}
	assertRefused(t, b.do("GET", cb, nil))
	if ssoCount(portal.Realm, "session_ended") != 1 {
		t.Fatal("not counted as session_ended")
	}
}

// TestSSOMFAAtThePortal: a site with require mfa asks the portal for a
// second factor before it hands the sign-in over.
func TestSSOMFAAtThePortal(t *testing.T) {
	sr := newSSORealm(t)
	site := sr.at(ssoSiteA)
	site.RequireMFA = true
	portal := sr.at(ssoPortalOrigin)
	portal.totp = &totpService{} // the portal offers a second factor (its step-up page)
	b := sr.browser()
	isStepUp := func(loc string) bool { return strings.Contains(loc, "/mfa/step-up") }
	_, loc, _ := b.follow(ssoSiteA+"/private", nil)
	lu, _ := url.Parse(loc)
	w := b.do("POST", ssoPortalOrigin+"/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {lu.Query().Get("redirect")}})
	_, loc, _ = b.follow(b.resolve(ssoPortalOrigin, w.Header().Get("Location")), isStepUp)
	if !isStepUp(loc) || !strings.HasPrefix(loc, ssoPortalOrigin) {
		t.Fatalf("want the portal's step-up page, stopped at %s", loc)
	}
	su, _ := url.Parse(loc)
	if back := su.Query().Get("redirect"); !strings.HasPrefix(back, "/authentication/sso?") || !strings.Contains(back, "mfa=1") {
		t.Fatalf("step-up does not come back to /sso: %q", back)
	}
}

// TestSSOConfig: origins are exact, the block is complete, and every
// directive of a realm has the same one (the error names both lines).
func TestSSOConfig(t *testing.T) {
	for _, tc := range []struct{ block, want string }{
		{"portal https://login.example.com/\n\t\t\tsites https://a.example.com", "is not an origin"},
		{"portal https://login.example.com/x\n\t\t\tsites https://a.example.com", "is not an origin"},
		{"portal https://login.example.com\n\t\t\tsites https://u@a.example.com", "is not an origin"},
		{"portal https://login.example.com\n\t\t\tsites a.example.com", "is not an origin"},
		{"portal https://login.example.com\n\t\t\tsites https://a.example.com?x", "is not an origin"},
		{"portal ftp://login.example.com\n\t\t\tsites https://a.example.com", "is not an origin"},
		{"portal https://login.example.com:99999\n\t\t\tsites https://a.example.com", "is not an origin"},
		{"sites https://a.example.com", "portal is required"},
		{"portal https://login.example.com", "sites is required"},
		{"portal https://login.example.com\n\t\t\tsites https://a.example.com https://A.example.com:443", "listed twice"},
		{"portal https://login.example.com\n\t\t\tsites https://login.example.com", "listed twice"},
		{"portal https://login.example.com\n\t\t\tpages x", "unknown sso option"},
	} {
		input := "http://a.example {\n\ttoken_auth {\n\t\tsigning_key hs256 " + testSecret + "\n\t\tsso {\n\t\t\t" + tc.block + "\n\t\t}\n\t}\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.block, err, tc.want)
		}
	}

	site := func(host, block string) string {
		return "http://" + host + " {\n\ttoken_auth {\n\t\trealm shared\n\t\tsigning_key hs256 " + testSecret + "\n\t\tstore memory\n\t\t" + block + "\n\t}\n}\n"
	}
	same := "sso {\n\t\t\tportal https://login.example.com\n\t\t\tsites https://a.example https://b.example\n\t\t}"
	reordered := "sso {\n\t\t\tportal https://LOGIN.example.com:443\n\t\t\tsites https://b.example https://a.example\n\t\t}"
	other := "sso {\n\t\t\tportal https://login.example.com\n\t\t\tsites https://a.example\n\t\t}"
	adapt := func(a, b string) (string, error) {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site("a.example", a)+site("b.example", b)), map[string]any{"filename": "Caddyfile"})
		return string(out), err
	}
	if out, err := adapt(same, reordered); err != nil || !strings.Contains(out, `"sso":{"portal":"https://login.example.com","sites":["https://a.example","https://b.example"]}`) {
		t.Fatalf("the same block: %v\n%s", err, out)
	}
	for _, b := range []string{other, "", "endpoint /auth\n\t\t" + same} {
		_, err := adapt(same, b)
		if err == nil || !strings.Contains(err.Error(), "different sso blocks") || !strings.Contains(err.Error(), "Caddyfile:2") || !strings.Contains(err.Error(), "Caddyfile:13") {
			t.Errorf("second directive %q: got %v, want an error naming both lines", b, err)
		}
	}

	// JSON: checked at provisioning
	ta := hs256Config("sso-json")
	ta.SSO = &SSOConfig{Portal: "https://login.example.com", Sites: []string{"https://a.example/"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := ta.Provision(ctx); err == nil || !strings.Contains(err.Error(), "is not an origin") {
		t.Fatalf("JSON with a path: %v", err)
	}
	_ = ta.Cleanup()
}

// TestSSODocsCaddyfile: the three-site Caddyfile of docs/sso.md adapts,
// with the same sso block on the three directives and an audience each.
func TestSSODocsCaddyfile(t *testing.T) {
	text, err := os.ReadFile("docs/sso.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(text), "## A complete three-site Caddyfile")
	_, rest, _ = strings.Cut(rest, "```caddyfile\n")
	cfg, _, found := strings.Cut(rest, "```")
	if !found {
		t.Fatal("no Caddyfile in docs/sso.md")
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	block := `"sso":{"portal":"https://login.example.com","sites":["https://shop.example.com","https://blog.example.org"]}`
	if n := strings.Count(string(out), block); n != 3 {
		t.Fatalf("the sso block %d times, want 3:\n%s", n, out)
	}
	for _, aud := range []string{"login.example.com", "shop.example.com", "blog.example.org"} {
		if !strings.Contains(string(out), `"audience":"`+aud+`"`) {
			t.Fatalf("no audience %s", aud)
		}
	}
}

// revokingStore revokes a site session's portal session right after the
// site session is created: the moment of a revocation that listed the
// family just before the site session existed.
type revokingStore struct{ Store }

func (s revokingStore) Create(ctx context.Context, sess Session, maxLive int) ([]string, error) {
	evicted, err := s.Store.Create(ctx, sess, maxLive)
	if err != nil {
		return nil, err
	}
	if sess.Parent != "" {
		return evicted, s.Store.Revoke(ctx, sess.Parent)
	}
	return evicted, nil
}

// TestSSOLinkRacingRevocation: a portal session revoked while a site
// session is being linked to it leaves no live site session: the callback
// looks again after creating it, and revokes it.
func TestSSOLinkRacingRevocation(t *testing.T) {
	sr := newSSORealm(t)
	b := sr.browser()
	cb := b.callbackURL(ssoSiteA)
	rs := sr.at(ssoSiteA).realm
	rs.store = revokingStore{rs.store}
	assertRefused(t, b.do("GET", cb, nil))
	assertAllRevoked(t, rs.store, "alice", 2)
}

// TestSSOWarnsOfASharedAudience: with sso on and `audience` left at its
// default, the operator is told that API tokens cross sites; a site that
// names its own audience is not warned.
func TestSSOWarnsOfASharedAudience(t *testing.T) {
	warned := func(audience string) int {
		core, logs := observer.New(zap.WarnLevel)
		ta := &TokenAuth{Realm: "shop", Audience: audience, logger: zap.New(core)}
		ta.warnSharedAudience()
		return logs.FilterMessageSnippet("shares one audience").Len()
	}
	if n := warned("shop"); n != 1 {
		t.Errorf("default audience: %d warnings, want 1", n)
	}
	if n := warned("https://a.example"); n != 0 {
		t.Errorf("own audience: %d warnings, want 0", n)
	}
}
