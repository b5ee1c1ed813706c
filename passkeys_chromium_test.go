package tokenauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserPasskeys walks the passkey flows in headless Chromium with
// the DevTools virtual authenticator (tests/browser/passkeys.test.mjs):
// password sign-in, adding a passkey on the account page, "Sign in with a
// passkey", autofill, a removed passkey refused, invitations for accounts
// without a password, on a desktop window and a 375 px phone screen. Two
// Caddy instances share one Redis: a passkey registered at one signs in
// at the other. The login page's screenshot goes to the test's temporary
// directory, or to $PASSKEY_SCREENSHOT (docs/passkeys-login.png).
func TestBrowserPasskeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy, Redis and Chromium")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	need := func(err error, what string) {
		if err == nil {
			return
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (%v): test.d/setup-chromium.sh installs it", what, err)
		}
		t.Skipf("%s is missing (%v): run test.d/setup-chromium.sh or ./test.sh", what, err)
	}
	_, err := os.Stat(chromium)
	need(err, "Chromium ("+chromium+")")
	node, err := exec.LookPath("node")
	need(err, "node")
	_, err = os.Stat("tests/browser/node_modules/playwright-core/package.json")
	need(err, "playwright-core (npm ci in tests/browser)")

	redisURL := testRedisURL(t)
	a := startPasskeySite(t, redisURL)
	b := startPasskeySite(t, redisURL)
	invites := []string{passkeyInvitation(t, a, "carol"), passkeyInvitation(t, a, "dave")}

	screenshot := os.Getenv("PASSKEY_SCREENSHOT")
	if screenshot == "" {
		screenshot = filepath.Join(t.TempDir(), "passkeys-login.png")
	} else if screenshot, err = filepath.Abs(screenshot); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "--test-concurrency=1", "passkeys.test.mjs")
	cmd.Dir = "tests/browser"
	cmd.Env = append(os.Environ(), "BASE_URL="+a.BaseURL, "BASE_URL_2="+b.BaseURL, "INVITE_URLS="+strings.Join(invites, ","),
		"SCREENSHOT="+screenshot, "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("browser test:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v\ncaddy A logs:\n%s\ncaddy B logs:\n%s", err, a.Logs(), b.Logs())
	}
	if logs := a.Logs() + b.Logs(); strings.Contains(logs, `"clientDataJSON`) || strings.Contains(logs, "eyJ0eXBlIj") {
		t.Fatal("credential material in the logs")
	}
}

// startPasskeySite serves examples/site on http://localhost:<port> with a
// token_auth realm on the shared Redis: alice and bob have passwords,
// carol and dave only passkeys. Both instances sign with the same key,
// as a cluster's instances do.
func startPasskeySite(t *testing.T, redisURL string) *caddyProc {
	t.Helper()
	siteDir, err := filepath.Abs("examples/site")
	if err != nil {
		t.Fatal(err)
	}
	p := &caddyProc{t: t, bin: caddyBinary(t), dir: t.TempDir(), Port: freePort(t)}
	p.BaseURL = fmt.Sprintf("http://localhost:%d", p.Port) // WebAuthn needs a host name: localhost
	p.adminURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	log {
		output stderr
		format json
		level DEBUG
	}
}

http://localhost:%d {
	bind 127.0.0.1
	root * %s
	@private path /private /private/*
	token_auth @private {
		signing_key hs256 passkey-e2e-secret-0123456789abcdefghij
		store redis %s
		user alice %s
		user bob %s
		user carol
		user dave
		passkeys
	}
	templates
	file_server
}
`, strings.TrimPrefix(p.adminURL, "http://"), filepath.Join(p.dir, "storage"), p.Port, siteDir, redisURL,
		testHash(t, "alice-password"), testHash(t, "bob-password"))
	if err := os.WriteFile(filepath.Join(p.dir, "Caddyfile"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

// passkeyInvitation asks p's admin API for an invitation link for user.
func passkeyInvitation(t *testing.T, p *caddyProc, user string) string {
	t.Helper()
	body := strings.NewReader(`{"user":"` + user + `","origin":"` + p.BaseURL + `"}`)
	resp, err := http.Post(p.adminURL+"/token_auth/default/invites", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct{ URL string }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("invite %s: %d %v\n%s", user, resp.StatusCode, err, p.Logs())
	}
	return res.URL
}
