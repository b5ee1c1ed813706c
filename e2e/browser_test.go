package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// End-to-end tests of the browser side (login page, form login, cookies,
// refresh, logout, redirects, CSRF) against a real Caddy process.

// browserSite is a site whose /private/* is guarded; the guarded
// handler echoes the user and the cookies it received, the rest is public.
func browserSite(t *testing.T, options string) string {
	return fmt.Sprintf(`
	token_auth /private/* {
		signing_key hs256 %s
		store memory
		user alice %s {
			name "Alice A."
			email alice@example.com
		}
		%s
	}
	respond /private/* "private for {http.auth.user.id}; cookies: {http.request.header.Cookie}" 200
	respond "public" 200
`, e2eSecret, testenv.Hash(t, "alice-password"), options)
}

// webResp is an answer as a browser sees it, redirects not followed.
type webResp struct {
	*http.Response
	Body string
}

func (r webResp) cookie(name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// web sends one request as a browser would. A url.Values body is sent
// form-encoded; headers are name, value pairs.
func (p *caddyProc) web(method, path string, form url.Values, cookies []*http.Cookie, headers ...string) webResp {
	p.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, p.BaseURL+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		if c != nil {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	resp, raw := p.send(req, headers...)
	return webResp{Response: resp, Body: string(raw)}
}

// formLogin signs alice in through the form and returns both cookies.
func formLogin(t *testing.T, p *caddyProc) (access, refresh *http.Cookie) {
	t.Helper()
	r := p.web("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {"/private/x"}}, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/private/x" {
		t.Fatalf("form login: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	access, refresh = r.cookie(accessCookieName), r.cookie(refreshCookieName)
	if access == nil || refresh == nil {
		t.Fatalf("form login set cookies %v", r.Header["Set-Cookie"])
	}
	return access, refresh
}

// tokenExp reads the exp claim of a JWT without verifying it.
func tokenExp(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatal(err)
	}
	return time.Unix(claims.Exp, 0)
}

// waitExpired sleeps until a token's exp has passed (the only waiting
// these tests do: there is no other way to get an expired token signed
// by the server).
func waitExpired(t *testing.T, token string) {
	t.Helper()
	time.Sleep(time.Until(tokenExp(t, token).Add(1100 * time.Millisecond)))
}

func TestLoginPage(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, ""))

	r := p.web("GET", "/authentication?redirect="+url.QueryEscape("/private/a?b=1&c=2"), nil, nil)
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("login page: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<form method="post" action="/authentication">`,
		`<input type="hidden" name="redirect" value="/private/a?b=1&amp;c=2">`,
		`<label for="username">`, `name="username"`, `autocomplete="username"`,
		`<label for="password">`, `name="password" type="password" autocomplete="current-password"`,
		`<meta name="viewport"`,
	} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(r.Body, `role="alert"`) {
		t.Error("a first visit shows an error")
	}
	// self-contained: nothing loaded from anywhere, no script
	for _, bad := range []string{"<script", "<link", "src=\"http", "@import", "url("} {
		if strings.Contains(r.Body, bad) {
			t.Errorf("login page is not self-contained: has %s", bad)
		}
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", r.Header)
	}

	r = p.web("GET", "/authentication?error=invalid_login&redirect=%2Fprivate%2F", nil, nil)
	if !strings.Contains(r.Body, `role="alert"`) || !strings.Contains(r.Body, "Wrong username or password") || !strings.Contains(r.Body, `aria-invalid="true"`) {
		t.Errorf("error not shown:\n%s", r.Body)
	}
	r = p.web("GET", "/authentication?notice=signed_out", nil, nil)
	if !strings.Contains(r.Body, "You have been signed out.") {
		t.Error("signed-out notice not shown")
	}
	// nothing from the query is shown as is; a bad redirect becomes "/"
	r = p.web("GET", "/authentication?error=%3Cb%3Eowned&notice=owned&redirect=%2F%2Fevil.com", nil, nil)
	if strings.Contains(r.Body, "owned") || strings.Contains(r.Body, `role="alert"`) || !strings.Contains(r.Body, `name="redirect" value="/"`) {
		t.Errorf("query reflected:\n%s", r.Body)
	}
	if r := p.web("HEAD", "/authentication", nil, nil); r.StatusCode != 200 || r.Body != "" {
		t.Errorf("HEAD: %d %q", r.StatusCode, r.Body)
	}
	if r := p.web("PUT", "/authentication", nil, nil); r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD, POST, DELETE" {
		t.Errorf("PUT: %d %v", r.StatusCode, r.Header)
	}
}

func TestFormLogin(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, ""))

	r := p.web("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {"/private/x?y=1"}}, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/private/x?y=1" {
		t.Fatalf("login: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	access, refresh := r.cookie(accessCookieName), r.cookie(refreshCookieName)
	if access == nil || refresh == nil {
		t.Fatalf("cookies: %v", r.Header["Set-Cookie"])
	}
	for _, c := range []*http.Cookie{access, refresh} {
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure {
			t.Errorf("%s: HttpOnly=%v SameSite=%v Secure=%v (plain HTTP)", c.Name, c.HttpOnly, c.SameSite, c.Secure)
		}
		// both live as long as the session (idle_ttl 168h by default),
		// far longer than the access token inside
		if c.MaxAge < int((167*time.Hour).Seconds()) || time.Until(c.Expires) < 167*time.Hour {
			t.Errorf("%s: Max-Age %d, Expires %v: not the session's lifetime", c.Name, c.MaxAge, c.Expires)
		}
	}
	if access.Path != "/" || refresh.Path != "/authentication" {
		t.Errorf("paths: access %q refresh %q", access.Path, refresh.Path)
	}
	if time.Until(tokenExp(t, access.Value)) > 16*time.Minute {
		t.Errorf("access token lives until %v", tokenExp(t, access.Value))
	}

	// the guard reads the access cookie
	r = p.web("GET", "/private/x", nil, []*http.Cookie{access})
	if r.StatusCode != 200 || !strings.Contains(r.Body, "private for alice") {
		t.Fatalf("guard with the cookie: %d %s", r.StatusCode, r.Body)
	}

	// email works in the username field and in an email field
	for _, form := range []url.Values{
		{"username": {"alice@example.com"}, "password": {"alice-password"}},
		{"email": {"ALICE@example.com"}, "password": {"alice-password"}},
	} {
		if r := p.web("POST", "/authentication", form, nil); r.StatusCode != 303 || r.Header.Get("Location") != "/" || r.cookie(accessCookieName) == nil {
			t.Errorf("login with %v: %d %q", form, r.StatusCode, r.Header.Get("Location"))
		}
	}

	// failures go back to the login page with the error, keeping the target
	for name, form := range map[string]url.Values{
		"wrong password":   {"username": {"alice"}, "password": {"nope"}, "redirect": {"/private/x"}},
		"unknown user":     {"username": {"bob"}, "password": {"alice-password"}, "redirect": {"/private/x"}},
		"missing password": {"username": {"alice"}, "redirect": {"/private/x"}},
		"nothing":          {"redirect": {"/private/x"}},
	} {
		r := p.web("POST", "/authentication", form, nil)
		if r.StatusCode != 303 || r.Header.Get("Location") != "/authentication?error=invalid_login&redirect=%2Fprivate%2Fx" {
			t.Errorf("%s: %d %q", name, r.StatusCode, r.Header.Get("Location"))
		}
		// no session cookies (the typed name is kept for the login page)
		if r.cookie(accessCookieName) != nil || r.cookie(refreshCookieName) != nil {
			t.Errorf("%s: cookies set: %v", name, r.Header["Set-Cookie"])
		}
	}

	// a foreign redirect target is replaced by "/"
	r = p.web("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {"https://evil.com/"}}, nil)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/" {
		t.Errorf("evil redirect: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	// login CSRF: a form posted from another site is refused
	r = p.web("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}}, nil, "Origin", "https://evil.com")
	if r.StatusCode != 403 || r.cookie(accessCookieName) != nil {
		t.Errorf("cross-origin form login: %d", r.StatusCode)
	}
	r = p.web("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}}, nil, "Origin", p.BaseURL)
	if r.StatusCode != 303 {
		t.Errorf("same-origin form login: %d", r.StatusCode)
	}

	// other content types stay 415; JSON logins set no cookies
	resp := p.do("POST", "/authentication", nil, "Content-Type", "text/plain")
	if resp.Status != 415 {
		t.Errorf("text/plain: %d", resp.Status)
	}
	resp = p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-password"})
	if resp.Status != 201 || len(resp.Header["Set-Cookie"]) != 0 {
		t.Errorf("JSON login: %d cookies %v", resp.Status, resp.Header["Set-Cookie"])
	}
	// an oversized form is refused like an oversized JSON body
	big := url.Values{"username": {"alice"}, "password": {strings.Repeat("x", maxBodySize)}}
	if r := p.web("POST", "/authentication", big, nil); r.StatusCode != 413 {
		t.Errorf("oversized form: %d", r.StatusCode)
	}
}

func TestGuardRedirectsBrowsers(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, "access_ttl 3s"))
	html := []string{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
	loginLoc := "/authentication?redirect=%2Fprivate%2Fa%3Fb%3D1"

	// never logged in: to the login page, remembering the target
	for _, method := range []string{"GET", "HEAD"} {
		r := p.web(method, "/private/a?b=1", nil, nil, html...)
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != loginLoc {
			t.Errorf("%s navigation: %d %q", method, r.StatusCode, r.Header.Get("Location"))
		}
	}
	// not navigations: 401 with a challenge
	for name, r := range map[string]webResp{
		"fetch without text/html": p.web("GET", "/private/a", nil, nil, "Accept", "application/json"),
		"POST accepting html":     p.web("POST", "/private/a", url.Values{}, nil, html...),
		"bad bearer token":        p.web("GET", "/private/a", nil, nil, "Accept", html[1], "Authorization", "Bearer nope"),
	} {
		if r.StatusCode != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %v", name, r.StatusCode, r.Header)
		}
	}
	// a garbage cookie is not "expired": login page
	r := p.web("GET", "/private/a?b=1", nil, []*http.Cookie{{Name: accessCookieName, Value: "garbage"}}, html...)
	if r.StatusCode != 302 || r.Header.Get("Location") != loginLoc {
		t.Errorf("garbage cookie: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	access, _ := formLogin(t, p)
	if r := p.web("GET", "/private/a?b=1", nil, []*http.Cookie{access}, html...); r.StatusCode != 200 {
		t.Fatalf("fresh cookie: %d", r.StatusCode)
	}
	waitExpired(t, access.Value)
	// expired access cookie: through the refresh endpoint
	r = p.web("GET", "/private/a?b=1", nil, []*http.Cookie{access}, html...)
	if r.StatusCode != 302 || r.Header.Get("Location") != "/authentication/refresh?redirect=%2Fprivate%2Fa%3Fb%3D1" {
		t.Errorf("expired cookie: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	// an API client with the expired cookie still gets 401
	if r := p.web("GET", "/private/a", nil, []*http.Cookie{access}, "Accept", "application/json"); r.StatusCode != 401 {
		t.Errorf("expired cookie, not a navigation: %d", r.StatusCode)
	}
}

func TestBrowserRefresh(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, "access_ttl 3s\n\t\treuse_grace 0"))
	access, refresh := formLogin(t, p)
	waitExpired(t, access.Value)

	r := p.web("GET", "/authentication/refresh?redirect=%2Fprivate%2Fa%3Fb%3D1", nil, []*http.Cookie{refresh})
	if r.StatusCode != 303 || r.Header.Get("Location") != "/private/a?b=1" {
		t.Fatalf("refresh: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	access2, refresh2 := r.cookie(accessCookieName), r.cookie(refreshCookieName)
	if access2 == nil || refresh2 == nil || access2.Value == access.Value || refresh2.Value == refresh.Value {
		t.Fatalf("refresh did not rotate the cookies: %v", r.Header["Set-Cookie"])
	}
	if refresh2.Path != "/authentication" || !refresh2.HttpOnly || access2.Path != "/" {
		t.Errorf("rotated cookies: %+v %+v", access2, refresh2)
	}
	if r := p.web("GET", "/private/a", nil, []*http.Cookie{access2}); r.StatusCode != 200 {
		t.Errorf("rotated access cookie refused: %d", r.StatusCode)
	}

	// no refresh cookie: the login page, no error
	r = p.web("GET", "/authentication/refresh?redirect=%2Fprivate%2F", nil, nil)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/authentication?redirect=%2Fprivate%2F" {
		t.Errorf("no cookie: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	// a foreign target is replaced
	r = p.web("GET", "/authentication/refresh?redirect=%2F%2Fevil.com", nil, nil)
	if r.Header.Get("Location") != "/authentication" {
		t.Errorf("evil redirect: %q", r.Header.Get("Location"))
	}
	// the spent refresh cookie (no grace): reuse, the session ends, cookies cleared
	r = p.web("GET", "/authentication/refresh?redirect=%2Fprivate%2F", nil, []*http.Cookie{refresh})
	if r.StatusCode != 303 || r.Header.Get("Location") != "/authentication?error=session_expired&redirect=%2Fprivate%2F" {
		t.Errorf("reused cookie: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if c := r.cookie(accessCookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("access cookie not cleared: %v", r.Header["Set-Cookie"])
	}
	if c := r.cookie(refreshCookieName); c == nil || c.MaxAge >= 0 || c.Path != "/authentication" {
		t.Errorf("refresh cookie not cleared: %v", r.Header["Set-Cookie"])
	}
	// ...and the current one is dead too
	r = p.web("GET", "/authentication/refresh", nil, []*http.Cookie{refresh2})
	if r.Header.Get("Location") != "/authentication?error=session_expired" {
		t.Errorf("after reuse: %q", r.Header.Get("Location"))
	}
	if r := p.web("POST", "/authentication/refresh", url.Values{}, nil); r.StatusCode != 405 || r.Header.Get("Allow") != "GET" {
		t.Errorf("POST refresh: %d", r.StatusCode)
	}
}

func TestBrowserLogout(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, "access_ttl 3s"))
	html := []string{"Accept", "text/html"}

	access, refresh := formLogin(t, p)
	r := p.web("POST", "/authentication/logout", url.Values{}, []*http.Cookie{access, refresh}, "Origin", p.BaseURL)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/authentication?notice=signed_out" {
		t.Fatalf("logout: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	for _, name := range []string{accessCookieName, refreshCookieName} {
		if c := r.cookie(name); c == nil || c.MaxAge >= 0 {
			t.Errorf("%s not cleared: %v", name, r.Header["Set-Cookie"])
		}
	}
	// the session is revoked, not only forgotten by the browser
	if r := p.web("GET", "/private/", nil, []*http.Cookie{access}, html...); r.StatusCode != 302 || r.Header.Get("Location") != "/authentication?redirect=%2Fprivate%2F" {
		t.Errorf("access cookie after logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := p.web("GET", "/authentication/refresh", nil, []*http.Cookie{refresh}); r.Header.Get("Location") != "/authentication?error=session_expired" {
		t.Errorf("refresh cookie after logout: %q", r.Header.Get("Location"))
	}

	// after the access token expired, the refresh cookie still names the session
	access, refresh = formLogin(t, p)
	waitExpired(t, access.Value)
	r = p.web("POST", "/authentication/logout", url.Values{"redirect": {"/bye"}}, []*http.Cookie{access, refresh}, "Origin", p.BaseURL)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/bye" {
		t.Errorf("logout with redirect: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := p.web("GET", "/authentication/refresh", nil, []*http.Cookie{refresh}); r.Header.Get("Location") != "/authentication?error=session_expired" {
		t.Errorf("session not revoked by logout with an expired access token: %q", r.Header.Get("Location"))
	}

	// scope=global ends every session of the user
	a1, _ := formLogin(t, p)
	a2, r2 := formLogin(t, p)
	r = p.web("POST", "/authentication/logout", url.Values{"scope": {"global"}, "redirect": {"//evil.com"}}, []*http.Cookie{a2, r2}, "Origin", p.BaseURL)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/" {
		t.Errorf("global logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := p.web("GET", "/private/", nil, []*http.Cookie{a1}); r.StatusCode != 401 {
		t.Errorf("other session after global logout: %d", r.StatusCode)
	}

	// logout CSRF: refused from another origin, session untouched
	a3, r3 := formLogin(t, p)
	r = p.web("POST", "/authentication/logout", url.Values{}, []*http.Cookie{a3, r3}, "Origin", "https://evil.com")
	if r.StatusCode != 403 || len(r.Cookies()) != 0 {
		t.Errorf("cross-origin logout: %d %v", r.StatusCode, r.Header["Set-Cookie"])
	}
	if r := p.web("GET", "/private/", nil, []*http.Cookie{a3}); r.StatusCode != 200 {
		t.Errorf("session ended by a cross-origin logout: %d", r.StatusCode)
	}
	// without cookies, logout still clears and redirects
	if r := p.web("POST", "/authentication/logout", nil, nil); r.StatusCode != 303 || r.cookie(accessCookieName) == nil {
		t.Errorf("logout without cookies: %d", r.StatusCode)
	}
	if r := p.web("GET", "/authentication/logout", nil, nil); r.StatusCode != 405 || r.Header.Get("Allow") != "POST" {
		t.Errorf("GET logout: %d", r.StatusCode)
	}
}

func TestCSRFGuard(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, ""))
	access, _ := formLogin(t, p)
	bearer := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-password"}).str("accessToken")
	same := p.BaseURL
	sameOtherCase := strings.Replace(p.BaseURL, "127.0.0.1", "127.0.0.1.", 1)

	tests := []struct {
		name    string
		method  string
		cookie  bool
		headers []string
		want    int
	}{
		{"GET with cookie, foreign Origin", "GET", true, []string{"Origin", "https://evil.com"}, 200},
		{"HEAD with cookie, no Origin", "HEAD", true, nil, 200},
		{"OPTIONS with cookie, no Origin", "OPTIONS", true, nil, 200},
		{"POST with cookie, no Origin or Referer", "POST", true, nil, 403},
		{"POST with cookie, same Origin", "POST", true, []string{"Origin", same}, 200},
		{"POST with cookie, same Origin with trailing dot", "POST", true, []string{"Origin", sameOtherCase}, 200},
		{"POST with cookie, same Referer", "POST", true, []string{"Referer", same + "/private/form"}, 200},
		{"POST with cookie, foreign Origin", "POST", true, []string{"Origin", "https://evil.com"}, 403},
		{"POST with cookie, foreign Origin beats same Referer", "POST", true, []string{"Origin", "https://evil.com", "Referer", same + "/"}, 403},
		{"POST with cookie, Origin null", "POST", true, []string{"Origin", "null"}, 403},
		{"POST with cookie, same host other port", "POST", true, []string{"Origin", "http://127.0.0.1:1"}, 403},
		{"POST with cookie, foreign Referer", "POST", true, []string{"Referer", "https://evil.com/x"}, 403},
		{"PUT with cookie, no Origin", "PUT", true, nil, 403},
		{"PATCH with cookie, foreign Origin", "PATCH", true, []string{"Origin", "http://evil.com"}, 403},
		{"DELETE with cookie, foreign Origin", "DELETE", true, []string{"Origin", "http://evil.com"}, 403},
		{"DELETE with cookie, same Origin", "DELETE", true, []string{"Origin", same}, 200},
		{"POST with bearer, foreign Origin", "POST", false, []string{"Authorization", "Bearer " + bearer, "Origin", "https://evil.com"}, 200},
		{"DELETE with bearer, no Origin", "DELETE", false, []string{"Authorization", "Bearer " + bearer}, 200},
		{"POST with bearer and cookie, foreign Origin", "POST", true, []string{"Authorization", "Bearer " + bearer, "Origin", "https://evil.com"}, 200},
		{"POST with Basic credentials and cookie, same Origin", "POST", true, []string{"Authorization", "Basic YTpi", "Origin", same}, 200},
		{"POST with Basic credentials and cookie, foreign Origin", "POST", true, []string{"Authorization", "Basic YTpi", "Origin", "https://evil.com"}, 403},
	}
	for _, tc := range tests {
		var cookies []*http.Cookie
		if tc.cookie {
			cookies = []*http.Cookie{access}
		}
		r := p.web(tc.method, "/private/x", nil, cookies, tc.headers...)
		if r.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d (%s)", tc.name, r.StatusCode, tc.want, r.Body)
		}
		if tc.want == 403 && !strings.Contains(r.Body, `"Forbidden"`) {
			t.Errorf("%s: body %s", tc.name, r.Body)
		}
	}
}

func TestDeleteEndpointWithCookie(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, ""))
	access, _ := formLogin(t, p)

	if r := p.web("DELETE", "/authentication", nil, []*http.Cookie{access}); r.StatusCode != 403 {
		t.Errorf("cookie DELETE without Origin: %d", r.StatusCode)
	}
	r := p.web("DELETE", "/authentication", nil, []*http.Cookie{access}, "Origin", p.BaseURL)
	if r.StatusCode != 200 || !strings.Contains(r.Body, `"id":"alice"`) {
		t.Fatalf("cookie DELETE: %d %s", r.StatusCode, r.Body)
	}
	if c := r.cookie(accessCookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("cookies not cleared: %v", r.Header["Set-Cookie"])
	}
	if r := p.web("GET", "/private/", nil, []*http.Cookie{access}); r.StatusCode != 401 {
		t.Errorf("session alive after DELETE: %d", r.StatusCode)
	}
	// bearer DELETE is unchanged: no Origin needed, no cookies touched
	bearer := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-password"}).str("accessToken")
	r = p.web("DELETE", "/authentication", nil, nil, "Authorization", "Bearer "+bearer)
	if r.StatusCode != 200 || len(r.Cookies()) != 0 {
		t.Errorf("bearer DELETE: %d %v", r.StatusCode, r.Header["Set-Cookie"])
	}
}

func TestCookiesOff(t *testing.T) {
	p := startCaddy(t, "", browserSite(t, "cookies off"))
	// a valid access cookie, from an instance with cookies on and the same key
	access, _ := formLogin(t, startCaddy(t, "", browserSite(t, "")))

	if r := p.web("GET", "/authentication", nil, nil); r.StatusCode != 405 {
		t.Errorf("login page with cookies off: %d", r.StatusCode)
	}
	if r := p.web("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}}, nil); r.StatusCode != 415 {
		t.Errorf("form login with cookies off: %d", r.StatusCode)
	}
	for _, path := range []string{"/authentication/refresh", "/authentication/logout"} {
		if r := p.web("GET", path, nil, nil); r.StatusCode != 404 {
			t.Errorf("%s with cookies off: %d", path, r.StatusCode)
		}
	}
	// a navigation gets 401, and a cookie (even a valid one, same secret) is ignored
	if r := p.web("GET", "/private/", nil, nil, "Accept", "text/html"); r.StatusCode != 401 {
		t.Errorf("navigation with cookies off: %d", r.StatusCode)
	}
	if r := p.web("GET", "/private/", nil, []*http.Cookie{access}); r.StatusCode != 401 {
		t.Errorf("cookie accepted with cookies off: %d", r.StatusCode)
	}
	// JSON and bearer still work
	bearer := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-password"}).str("accessToken")
	if r := p.web("POST", "/private/", nil, nil, "Authorization", "Bearer "+bearer); r.StatusCode != 200 {
		t.Errorf("bearer with cookies off: %d", r.StatusCode)
	}
}

func TestSecureCookies(t *testing.T) {
	// behind a trusted proxy that says the browser used HTTPS
	p := startCaddy(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", browserSite(t, ""))
	form := url.Values{"username": {"alice"}, "password": {"alice-password"}}
	r := p.web("POST", "/authentication", form, nil, "X-Forwarded-Proto", "https")
	for _, name := range []string{accessCookieName, refreshCookieName} {
		if c := r.cookie(name); c == nil || !c.Secure {
			t.Errorf("%s over proxied HTTPS not Secure: %v", name, r.Header["Set-Cookie"])
		}
	}
	if c := p.web("POST", "/authentication", form, nil).cookie(accessCookieName); c == nil || c.Secure {
		t.Errorf("plain HTTP through the proxy gave a Secure cookie")
	}
	// an untrusted client cannot claim HTTPS (it would lose its cookies)
	q := startCaddy(t, "", browserSite(t, ""))
	if c := q.web("POST", "/authentication", form, nil, "X-Forwarded-Proto", "https").cookie(accessCookieName); c == nil || c.Secure {
		t.Errorf("untrusted X-Forwarded-Proto honoured")
	}
}

func TestLoginPageTemplate(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "login.html")
	if err := os.WriteFile(tmpl, []byte(`<h1>Custom {{.Host}} {{.Realm}}</h1>`+
		`<form method="post" action="{{.Action}}"><input name="redirect" value="{{.Redirect}}">`+
		`{{if .Error}}<p class="e">{{.ErrorCode}}: {{.Error}}</p>{{end}}{{if .Notice}}<p class="n">{{.NoticeCode}}</p>{{end}}`+
		`<a href="{{.Endpoint}}/refresh">r</a></form>`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCaddy(t, "", browserSite(t, "login_page "+tmpl+"\n\t\trealm members"))
	r := p.web("GET", "/authentication?error=invalid_login&notice=signed_out&redirect=%2Fprivate%2F%3Ca%3E", nil, nil)
	want := `<h1>Custom 127.0.0.1 members</h1><form method="post" action="/authentication">` +
		`<input name="redirect" value="/private/&lt;a&gt;"><p class="e">invalid_login: Wrong username or password. Please try again.</p>` +
		`<p class="n">signed_out</p><a href="/authentication/refresh">r</a></form>`
	if r.StatusCode != 200 || r.Body != want {
		t.Errorf("custom page:\n got %s\nwant %s", r.Body, want)
	}
	if csp := r.Header.Get("Content-Security-Policy"); csp != "frame-ancestors 'none'" {
		t.Errorf("custom page CSP %q", csp)
	}

	// a broken template stops the config from loading
	for name, src := range map[string]string{
		"does not parse":  `{{if .Error}}`,
		"does not render": `{{.NoSuchField}}`,
	} {
		if err := os.WriteFile(tmpl, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := caddyValidate(t, browserSite(t, "login_page "+tmpl))
		if err == nil || !strings.Contains(out, "login_page") {
			t.Errorf("%s: validate passed: %v\n%s", name, err, out)
		}
	}
	out, err := caddyValidate(t, browserSite(t, "login_page "+filepath.Join(dir, "missing.html")))
	if err == nil || !strings.Contains(out, "login_page") {
		t.Errorf("missing template: validate passed: %v\n%s", err, out)
	}
}

// caddyValidate runs `caddy validate` on a site block, as an operator would.
func caddyValidate(t *testing.T, body string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("{\n\tadmin off\n\tstorage file_system %s\n}\nhttp://127.0.0.1:1 {\n%s\n}\n", filepath.Join(dir, "storage"), body)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBinary(t), "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
