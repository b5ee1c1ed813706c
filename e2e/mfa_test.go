package e2e

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// mfaSiteBody is a site with /private/ (a password is enough) and /admin/
// (require mfa), sharing the realm, for alice and bob; both pages show the
// identity placeholders.
func mfaSiteBody(t *testing.T) string {
	users := "user alice " + testenv.Hash(t, "alice-password") + "\n\t\tuser bob " + testenv.Hash(t, "bob-password")
	page := func(name string) string {
		return "`<!doctype html><title>" + name + `</title><h1 id="heading">` + name + `</h1><p id="who">{http.auth.user.id}</p><p id="amr">{http.auth.user.amr}</p><p id="auth-time">{http.auth.user.auth_time}</p>` + "`"
	}
	return `
	@private path /private /private/*
	token_auth @private {
		store bolt
		` + users + `
		mfa totp issuer "Example Test"
	}
	@admin path /admin /admin/*
	token_auth @admin {
		store bolt
		` + users + `
		mfa totp issuer "Example Test"
		require mfa
	}
	header @private Content-Type text/html
	header @admin Content-Type text/html
	respond /private/ ` + page("Private") + `
	respond /admin/ ` + page("Admin") + `
`
}

// TestE2ETOTPBrowser walks the second-factor flows in headless Chromium
// (tests/browser/totp-flow.test.mjs) against the real Caddy. It saves the
// code page into the test's temporary directory, or to
// $MFA_CODE_PAGE_SCREENSHOT when set (to refresh docs/mfa-code-page.png),
// so a test run leaves the tree clean. It needs what TestBrowserLoginFlow
// needs (test.d/setup-chromium.sh).
func TestE2ETOTPBrowser(t *testing.T) {
	chromium, node := browserTools(t)
	p := startCaddy(t, "", mfaSiteBody(t))
	screenshot := filepath.Join(t.TempDir(), "mfa-code-page.png")
	if path := os.Getenv("MFA_CODE_PAGE_SCREENSHOT"); path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		screenshot = abs
	}
	runBrowserTest(t, node, "totp-flow.test.mjs", []string{"BASE_URL=" + p.BaseURL, "SCREENSHOT=" + screenshot, "CHROMIUM=" + chromium}, p)
}

// TestE2EMFAResetCommand: `caddy token-auth-users mfa reset` through the
// admin API removes the enrolment (the next password login needs no code),
// revokes the user's sessions, logs a warning and counts it.
func TestE2EMFAResetCommand(t *testing.T) {
	p := startCaddy(t, "", mfaSiteBody(t))
	login := map[string]string{"strategy": "local", "username": "alice", "password": "alice-password"}
	res := p.do("POST", "/authentication", login)
	wantStatus(t, "login", res, 201)
	access, refresh := res.str("accessToken"), res.str("refreshToken")
	res = p.do("POST", "/authentication/mfa/totp/setup", nil, "Authorization", "Bearer "+access)
	wantStatus(t, "setup", res, 200)
	code, err := totp.GenerateCode(res.str("secret"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "confirm", p.do("POST", "/authentication/mfa/totp/confirm", map[string]string{"code": code}, "Authorization", "Bearer "+access), 201)
	res = p.do("POST", "/authentication", login)
	if res.Status != 401 || res.str("data.reason") != "mfa_required" {
		t.Fatalf("login with TOTP: %d %s", res.Status, res.Raw)
	}

	out, err := exec.Command(p.bin, "token-auth-users", "mfa", "reset", "alice", "--realm", "default",
		"--address", strings.TrimPrefix(p.adminURL, "http://")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 session(s) revoked") {
		t.Fatalf("mfa reset: %v\n%s", err, out)
	}
	wantNotAuthenticated(t, "refresh after the reset", p.refresh(refresh))
	res = p.do("POST", "/authentication", login)
	wantStatus(t, "login after the reset (no code)", res, 201)
	if !strings.Contains(p.Logs(), "second factors reset through the admin API; sessions revoked") {
		t.Error("the reset is not logged")
	}
	raw := adminGet(t, p, "/metrics")
	if !strings.Contains(raw, `caddy_token_auth_second_factor_total{method="totp",realm="default",result="reset"} 1`) {
		t.Errorf("reset not counted:\n%s", grepLines(raw, "second_factor"))
	}

	// an unknown realm is a clear error
	out, err = exec.Command(p.bin, "token-auth-users", "mfa", "reset", "alice", "--realm", "nope",
		"--address", strings.TrimPrefix(p.adminURL, "http://")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `no realm \"nope\" is configured`) {
		t.Errorf("reset in an unknown realm: %v\n%s", err, out)
	}
}

// adminGet reads a path of the admin endpoint.
func adminGet(t *testing.T, p *caddyProc, path string) string {
	t.Helper()
	resp, err := http.Get(p.adminURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestE2EPasskeyAsSecondFactor walks a password login under `require mfa`
// completed with a passkey in headless Chromium with the virtual
// authenticator (tests/browser/mfa-passkey.test.mjs): the code page offers
// "Use a passkey", which lands on the page with amr pwd,hwk,mfa. It needs
// what TestBrowserLoginFlow needs (test.d/setup-chromium.sh).
func TestE2EPasskeyAsSecondFactor(t *testing.T) {
	chromium, node := browserTools(t)
	page := "`<!doctype html><title>Admin</title><h1 id=\"heading\">Admin</h1><p id=\"who\">{http.auth.user.id}</p><p id=\"amr\">{http.auth.user.amr}</p>`"
	p := startCaddy(t, "", `
	@admin path /admin /admin/*
	token_auth @admin {
		store bolt
		user alice `+testenv.Hash(t, "alice-password")+`
		passkeys
		require mfa
	}
	header @admin Content-Type text/html
	respond /admin/ `+page+`
`, caddyOptions{Host: "localhost"})
	runBrowserTest(t, node, "mfa-passkey.test.mjs", []string{"BASE_URL=" + p.BaseURL, "PASSWORD=alice-password", "CHROMIUM=" + chromium}, p)
}
