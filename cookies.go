package tokenauth

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Cookie names. The access cookie is sent to the whole site (Path=/); the
// refresh cookie only to the endpoint (Path={endpoint}), so pages and
// upstreams never see it.
const (
	accessCookieName  = "access_token"
	refreshCookieName = "refresh_token"
)

// cookiesEnabled says whether the browser features are on: the login
// page, form login, cookies and browser redirects. Default: on.
func (ta *TokenAuth) cookiesEnabled() bool {
	return ta.Cookies == nil || *ta.Cookies
}

// secureRequest says whether the browser reached us over HTTPS: directly,
// or through a trusted proxy (the server's trusted_proxies) that says so
// in X-Forwarded-Proto. Cookies are Secure except over plain HTTP.
func secureRequest(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted && strings.EqualFold(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0]), "https")
}

// sessionCookie builds one of the two cookies. Both live until the session
// ends (its absolute or idle lifetime, whichever is first), so that an
// expired access token inside a live cookie means "go refresh" and no
// cookie at all means "never logged in".
func sessionCookie(r *http.Request, name, value, path string, until time.Time, now time.Time) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
		HttpOnly: true,
		Secure:   secureRequest(r),
		SameSite: http.SameSiteLaxMode,
	}
	if until.IsZero() {
		// clearing
		c.Value = ""
		c.MaxAge = -1
		c.Expires = time.Unix(0, 0)
		return c
	}
	c.Expires = until.UTC()
	c.MaxAge = int(until.Sub(now) / time.Second)
	if c.MaxAge <= 0 {
		c.MaxAge = -1
	}
	return c
}

// maxCookieSize is what browsers store at least for one cookie (RFC 6265
// §6.1: 4096 bytes for name, value and attributes).
const maxCookieSize = 4096

// setSessionCookies gives the browser a freshly issued pair.
func (ta *TokenAuth) setSessionCookies(w http.ResponseWriter, r *http.Request, res *authResult) {
	now := ta.now()
	if len(res.AccessToken) > maxCookieSize-200 {
		// a browser would drop the cookie and keep being sent to sign in
		ta.logger.Warn("access token too large for a cookie; browsers may drop it: use fewer custom claims",
			zap.Int("bytes", len(res.AccessToken)))
	}
	http.SetCookie(w, sessionCookie(r, accessCookieName, res.AccessToken, "/", res.sessionEnd, now))
	http.SetCookie(w, sessionCookie(r, refreshCookieName, res.RefreshToken, ta.Endpoint, res.sessionEnd, now))
	w.Header().Set("Cache-Control", "no-store")
}

// clearSessionCookies removes both cookies.
func (ta *TokenAuth) clearSessionCookies(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, sessionCookie(r, accessCookieName, "", "/", time.Time{}, ta.now()))
	http.SetCookie(w, sessionCookie(r, refreshCookieName, "", ta.Endpoint, time.Time{}, ta.now()))
	w.Header().Set("Cache-Control", "no-store")
}

// cookieValue returns a cookie's value, or "".
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}
