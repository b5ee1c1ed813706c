package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// Single sign-on across three sites on three host names (docs/sso.md):
// the portal login.test and the sites a.test and b.test, served over
// plain HTTP on 127.0.0.1. Chromium maps *.test there with
// --host-resolver-rules; the Go client dials 127.0.0.1 with the site's
// Host header.

// ssoSite is one site block: its origin and the instance serving it.
type ssoSite struct {
	host string // a.test, b.test, login.test
	port int
}

func (s ssoSite) origin() string { return fmt.Sprintf("http://%s:%d", s.host, s.port) }

// ssoSiteBlock is the Caddyfile of one site: a public root, and private
// pages under /private that show who is signed in, through which portal,
// with a sign-out form. Each site has its own audience, as docs/sso.md
// advises.
func ssoSiteBlock(site ssoSite, store string, portal ssoSite, sites ...ssoSite) string {
	var origins []string
	for _, s := range sites {
		origins = append(origins, s.origin())
	}
	return fmt.Sprintf(`%s {
	bind 127.0.0.1
	@private path /private /private/*
	token_auth @private {
		realm sso-e2e
		audience %s
		signing_key hs256 {env.E2E_TOKEN_SECRET}
		%s
		user alice %s
		sso {
			portal %s
			sites %s
		}
	}
	header /private* Content-Type "text/html; charset=utf-8"
	respond /private* `+"`"+`<!doctype html><title>Private</title><h1 id="who">{http.auth.user.id} at {host} via {http.auth.user.sso_portal}</h1><form method="post" action="/authentication/logout"><button>Sign out</button></form>`+"`"+` 200
	respond "public"
}
`, site.origin(), site.host, store, "{ALICE_HASH}", portal.origin(), strings.Join(origins, " "))
}

// startSSOCaddy starts one Caddy serving the given site blocks (all on
// port), with {ALICE_HASH} replaced by a hash of alice's password;
// BaseURL is 127.0.0.1 for the harness's readiness check.
func startSSOCaddy(t *testing.T, port int, blocks string, env ...string) *caddyProc {
	t.Helper()
	p := &caddyProc{t: t, bin: caddyBinary(t), dir: t.TempDir(), Port: port,
		env: append([]string{"E2E_TOKEN_SECRET=" + e2eSecret}, env...)}
	p.BaseURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	p.adminURL = fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	cfg := fmt.Sprintf("{\n\tadmin %s\n\tstorage file_system %s\n\tlog {\n\t\toutput stderr\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n}\n\n%s",
		strings.TrimPrefix(p.adminURL, "http://"), filepath.Join(p.dir, "storage"),
		strings.ReplaceAll(blocks, "{ALICE_HASH}", testenv.Hash(t, "alice-password")))
	if err := os.WriteFile(filepath.Join(p.dir, "Caddyfile"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

// TestSSOChromium: one Caddy, three sites. In real Chromium: sign in at
// A's private page through the portal; B's private page opens with no
// login page; sign out at B; A's and the portal's private pages show the
// login page again (tests/browser/sso.test.mjs).
func TestSSOChromium(t *testing.T) {
	chromium, node := browserTools(t)
	port := testenv.FreePort(t)
	portal, a, b := ssoSite{"login.test", port}, ssoSite{"a.test", port}, ssoSite{"b.test", port}
	var blocks string
	for _, s := range []ssoSite{portal, a, b} {
		blocks += ssoSiteBlock(s, "store memory", portal, a, b)
	}
	p := startSSOCaddy(t, port, blocks)
	runBrowserTest(t, node, "sso.test.mjs", ssoBrowserEnv(chromium, portal, a, b), p)
}

// TestSSOChromiumTwoInstances: the same walk across two Caddy instances
// sharing Redis: the first serves the portal and A, the second B. B
// redeems a code the first issued, and signing out at B ends the
// sessions the first instance holds.
func TestSSOChromiumTwoInstances(t *testing.T) {
	chromium, node := browserTools(t)
	store := "store redis {env.E2E_REDIS_URL}"
	env := "E2E_REDIS_URL=" + testenv.RedisURL(t)
	port1, port2 := testenv.FreePort(t), testenv.FreePort(t)
	portal, a, b := ssoSite{"login.test", port1}, ssoSite{"a.test", port1}, ssoSite{"b.test", port2}
	one := startSSOCaddy(t, port1, ssoSiteBlock(portal, store, portal, a, b)+ssoSiteBlock(a, store, portal, a, b), env)
	two := startSSOCaddy(t, port2, ssoSiteBlock(b, store, portal, a, b), env)
	runBrowserTest(t, node, "sso.test.mjs", ssoBrowserEnv(chromium, portal, a, b), one, two)
}

func ssoBrowserEnv(chromium string, portal, a, b ssoSite) []string {
	return []string{"CHROMIUM=" + chromium, "PORTAL_URL=" + portal.origin(), "SITE_A_URL=" + a.origin(), "SITE_B_URL=" + b.origin()}
}

// TestSSOCodeAcrossInstances: at the HTTP level, a code the portal's
// instance issued is redeemed once at the other instance (through
// Redis), and is refused there the second time.
func TestSSOCodeAcrossInstances(t *testing.T) {
	store := "store redis {env.E2E_REDIS_URL}"
	env := "E2E_REDIS_URL=" + testenv.RedisURL(t)
	port1, port2 := testenv.FreePort(t), testenv.FreePort(t)
	portal, a, b := ssoSite{"login.test", port1}, ssoSite{"a.test", port1}, ssoSite{"b.test", port2}
	startSSOCaddy(t, port1, ssoSiteBlock(portal, store, portal, a, b)+ssoSiteBlock(a, store, portal, a, b), env)
	startSSOCaddy(t, port2, ssoSiteBlock(b, store, portal, a, b), env)
	c := newSSOClient(t)

	// B's page → the portal, with return_to and state
	resp := c.get(b.origin() + "/private")
	toPortal := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(toPortal, portal.origin()+"/authentication/sso?") {
		t.Fatalf("B's private page: %d to %q", resp.StatusCode, toPortal)
	}
	// sign in at the portal, then back to /sso: the portal hands a code to B
	u, _ := url.Parse(toPortal)
	resp = c.postForm(portal.origin()+"/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {u.RequestURI()}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	resp = c.get(portal.origin() + resp.Header.Get("Location"))
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(callback, b.origin()+"/authentication/sso/callback?") {
		t.Fatalf("/sso: %d to %q", resp.StatusCode, callback)
	}
	if resp = c.get(callback); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/private" {
		t.Fatalf("callback at the other instance: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp = c.get(b.origin() + "/private"); resp.StatusCode != http.StatusOK {
		t.Fatalf("B's private page after the callback: %d", resp.StatusCode)
	}
	if resp = c.get(callback); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the code redeemed twice: %d", resp.StatusCode)
	}
}

// ssoClient is a cookie-keeping HTTP client that dials 127.0.0.1 for
// every *.test host and follows no redirects.
type ssoClient struct {
	t      *testing.T
	client *http.Client
}

func newSSOClient(t *testing.T) *ssoClient {
	jar, _ := cookiejar.New(nil)
	return &ssoClient{t: t, client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableKeepAlives: true, DialContext: dialLoopback},
	}}
}

func (c *ssoClient) get(rawURL string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	return c.send(req)
}

func (c *ssoClient) postForm(rawURL string, form url.Values) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	u, _ := url.Parse(rawURL)
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	return c.send(req)
}

func (c *ssoClient) send(req *http.Request) *http.Response {
	c.t.Helper()
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// dialLoopback dials 127.0.0.1 at the address's port, whatever its host:
// the *.test names of these tests resolve nowhere else.
func dialLoopback(ctx context.Context, network, addr string) (net.Conn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}
