package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
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
	chromium, node := browserTools(t)
	redisURL := testenv.RedisURL(t)
	a := startPasskeySite(t, redisURL)
	b := startPasskeySite(t, redisURL)
	invites := []string{passkeyInvitation(t, a, "carol"), passkeyInvitation(t, a, "dave")}

	screenshot := os.Getenv("PASSKEY_SCREENSHOT")
	if screenshot == "" {
		screenshot = filepath.Join(t.TempDir(), "passkeys-login.png")
	} else if abs, err := filepath.Abs(screenshot); err == nil {
		screenshot = abs
	}
	runBrowserTest(t, node, "passkeys.test.mjs", []string{"BASE_URL=" + a.BaseURL, "BASE_URL_2=" + b.BaseURL,
		"INVITE_URLS=" + strings.Join(invites, ","), "SCREENSHOT=" + screenshot, "CHROMIUM=" + chromium}, a, b)
	if logs := a.Logs() + b.Logs(); strings.Contains(logs, "clientDataJSON") || strings.Contains(logs, "eyJ0eXBlIj") {
		t.Fatal("credential material in the logs")
	}
}

// startPasskeySite serves examples/site on http://localhost:<port> with a
// token_auth realm on the shared Redis: alice and bob have passwords,
// carol and dave only passkeys. Both instances sign with the same key,
// as a cluster's instances do.
func startPasskeySite(t *testing.T, redisURL string) *caddyProc {
	t.Helper()
	siteDir, err := filepath.Abs("../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	return startCaddy(t, "", `
	bind 127.0.0.1
	root * `+siteDir+`
	@private path /private /private/*
	token_auth @private {
		signing_key hs256 `+e2eSecret+`
		store redis `+redisURL+`
		user alice `+testenv.Hash(t, "alice-password")+`
		user bob `+testenv.Hash(t, "bob-password")+`
		user carol
		user dave
		passkeys
	}
	templates
	file_server
`, caddyOptions{Host: "localhost"})
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
