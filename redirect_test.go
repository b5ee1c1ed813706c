package tokenauth

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestSanitizeRedirect(t *testing.T) {
	tests := []struct{ in, want string }{
		// same-origin paths are kept as they are
		{"/", "/"},
		{"/private/", "/private/"},
		{"/private/a?b=1&c=%2F#top", "/private/a?b=1&c=%2F#top"},
		{"/%2F%2Fevil.com", "/%2F%2Fevil.com"}, // a path segment, not a host
		{"/a/../b", "/a/../b"},
		{"/?next=https://evil.com", "/?next=https://evil.com"},
		// everything else becomes "/"
		{"", "/"},
		{"//evil.com", "/"},
		{"//evil.com/private", "/"},
		{"///evil.com", "/"},
		{`/\evil.com`, "/"},
		{`\\evil.com`, "/"},
		{`/\/evil.com`, "/"},
		{"https://evil.com", "/"},
		{"https://evil.com/private/", "/"},
		{"http:evil.com", "/"},
		{"HTTPS://evil.com", "/"},
		{"javascript:alert(1)", "/"},
		{"JavaScript:alert(1)", "/"},
		{"data:text/html,<script>alert(1)</script>", "/"},
		{"%2F%2Fevil.com", "/"},
		{"%2f%2fevil.com", "/"},
		{"evil.com", "/"},
		{"private/", "/"},
		{"?x=1", "/"},
		{"#top", "/"},
		{"/\t/evil.com", "/"},
		{"/\n/evil.com", "/"},
		{"/\r\n/evil.com", "/"},
		{"/\x00/evil.com", "/"},
		{"/private/\x7f", "/"},
		{"/ /evil.com", "/"},
		{"/\u00a0/evil.com", "/"},
		{"/private/\u2215evil.com", "/"},
		{"/private/x\r\nSet-Cookie: a=b", "/"},
		{"\t//evil.com", "/"},
		{" /private/", "/"},
		{"/" + strings.Repeat("a", maxRedirectLen-1), "/" + strings.Repeat("a", maxRedirectLen-1)},
		{"/" + strings.Repeat("a", maxRedirectLen), "/"},
		{"/" + strings.Repeat("a", 1<<20), "/"},
	}
	for _, tc := range tests {
		if got := sanitizeRedirect(tc.in); got != tc.want {
			t.Errorf("sanitizeRedirect(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRequestOrigin(t *testing.T) {
	tests := []struct {
		name           string
		host           string
		origin, referr string
		want           originVerdict
	}{
		{"no headers", "example.com", "", "", originUnknown},
		{"same origin", "example.com", "https://example.com", "", originSame},
		{"same origin over http", "example.com", "http://example.com", "", originSame},
		{"same origin, explicit default port", "example.com", "https://example.com:443", "", originSame},
		{"host with default port", "example.com:443", "https://example.com", "", originSame},
		{"case and trailing dot", "Example.COM", "https://example.com.", "", originSame},
		{"same host and port", "localhost:8080", "http://localhost:8080", "", originSame},
		{"ipv6", "[::1]:8080", "http://[::1]:8080", "", originSame},
		{"other port", "localhost:8080", "http://localhost:9090", "", originCross},
		{"port vs none", "localhost:8080", "http://localhost", "", originCross},
		{"other host", "example.com", "https://evil.com", "", originCross},
		{"sub-domain", "example.com", "https://evil.example.com", "", originCross},
		{"suffix trick", "example.com", "https://example.com.evil.com", "", originCross},
		{"null", "example.com", "null", "", originCross},
		{"not http", "example.com", "file://example.com", "", originCross},
		{"garbage", "example.com", "::::", "", originCross},
		{"referer same", "example.com", "", "https://example.com/page?x", originSame},
		{"referer other", "example.com", "", "https://evil.com/example.com", originCross},
		{"origin wins over referer", "example.com", "https://evil.com", "https://example.com/", originCross},
		{"userinfo", "example.com", "", "https://example.com@evil.com/", originCross},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "http://"+tc.host+"/x", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.referr != "" {
			r.Header.Set("Referer", tc.referr)
		}
		if got := requestOrigin(r); got != tc.want {
			t.Errorf("%s: requestOrigin = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSessionCookieSecureOverTLS(t *testing.T) {
	now := time.Now()
	r := httptest.NewRequest("POST", "https://example.com/authentication", nil)
	r.TLS = &tls.ConnectionState{}
	if c := sessionCookie(r, accessCookieName, "v", "/", now.Add(time.Hour), now); !c.Secure || !c.HttpOnly || c.MaxAge != 3600 {
		t.Errorf("over TLS: %+v", c)
	}
	if c := sessionCookie(r, accessCookieName, "", "/", time.Time{}, now); !c.Secure || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("clearing over TLS: %+v", c)
	}
	r = httptest.NewRequest("POST", "http://example.com/authentication", nil)
	r.Header.Set("X-Forwarded-Proto", "https") // from nobody we trust
	if c := sessionCookie(r, accessCookieName, "v", "/", now.Add(time.Hour), now); c.Secure {
		t.Errorf("plain HTTP: Secure set")
	}
}

func TestCaddyfileBrowserOptions(t *testing.T) {
	parse := func(src string) (*TokenAuth, error) {
		ta := new(TokenAuth)
		return ta, ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
	}
	ta, err := parse("token_auth {\n cookies off\n login_page /etc/caddy/login.html\n}")
	if err != nil || ta.Cookies == nil || *ta.Cookies || ta.LoginPage != "/etc/caddy/login.html" || ta.cookiesEnabled() {
		t.Errorf("cookies off: %+v %v", ta, err)
	}
	ta, err = parse("token_auth {\n cookies off\n cookies on\n}")
	if err != nil || !ta.cookiesEnabled() {
		t.Errorf("cookies on: %v %v", ta.Cookies, err)
	}
	if ta, _ := parse("token_auth {\n}"); !ta.cookiesEnabled() {
		t.Error("cookies are not on by default")
	}
	for _, bad := range []string{
		"token_auth {\n cookies\n}",
		"token_auth {\n cookies yes\n}",
		"token_auth {\n cookies on off\n}",
		"token_auth {\n login_page\n}",
		"token_auth {\n login_page a b\n}",
	} {
		if _, err := parse(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
