package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestBrowserLoginFlow serves the example site (examples/Caddyfile) with
// the real Caddy and walks its login flow in headless Chromium, driven by
// playwright-core (tests/browser/login-flow.test.mjs). It saves a
// screenshot of the login page into the test's temporary directory, or to
// $LOGIN_PAGE_SCREENSHOT when set (docs/refresh-screenshot.sh sets it to
// refresh docs/login-page.png), so a test run leaves the tree clean.
//
// It needs Debian's chromium, node and `npm ci` in tests/browser
// (test.d/setup-chromium.sh does all three). Without them it fails under
// CI=true and skips elsewhere.
func TestBrowserLoginFlow(t *testing.T) {
	chromium, node := browserTools(t)
	p := startExampleSite(t, "3s")
	screenshot, err := screenshotPath(t)
	if err != nil {
		t.Fatal(err)
	}
	runBrowserTest(t, node, "login-flow.test.mjs", []string{"BASE_URL=" + p.BaseURL, "SCREENSHOT=" + screenshot, "CHROMIUM=" + chromium}, p)
}

// browserTools finds what the browser tests drive: Chromium ($CHROMIUM,
// default Debian's /usr/bin/chromium), node, and playwright-core installed
// in tests/browser. Without them a test fails under CI=true and skips
// elsewhere.
func browserTools(t *testing.T) (chromium, node string) {
	t.Helper()
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	need := func(err error, what string) {
		if err != nil {
			testenv.Need(t, fmt.Sprintf("%s is missing (%v): test.d/setup-chromium.sh (or ./test.sh) installs it", what, err))
		}
	}
	_, err := os.Stat(chromium)
	need(err, "Chromium ("+chromium+")")
	node, err = exec.LookPath("node")
	need(err, "node")
	_, err = os.Stat("../tests/browser/node_modules/playwright-core/package.json")
	need(err, "playwright-core (npm ci in tests/browser)")
	return chromium, node
}

// runBrowserTest runs tests/browser/<script> with node's test runner and
// env, and fails the test, with the logs of the Caddy processes, when it
// fails.
func runBrowserTest(t *testing.T, node, script string, env []string, procs ...*caddyProc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "--test-concurrency=1", script)
	cmd.Dir = "../tests/browser"
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("browser test:\n%s", out)
	if err != nil {
		var logs strings.Builder
		for i, p := range procs {
			fmt.Fprintf(&logs, "caddy #%d logs:\n%s\n", i+1, p.Logs())
		}
		t.Fatalf("browser test failed: %v\n%s", err, logs.String())
	}
}

// screenshotPath is where the login page's screenshot goes: an absolute
// $LOGIN_PAGE_SCREENSHOT, or a file in the test's temporary directory.
func screenshotPath(t *testing.T) (string, error) {
	path := os.Getenv("LOGIN_PAGE_SCREENSHOT")
	if path == "" {
		return filepath.Join(t.TempDir(), "login-page.png"), nil
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return path, os.MkdirAll(filepath.Dir(path), 0o755)
}

// startExampleSite runs examples/Caddyfile as shipped, but on a free port
// with its own admin address and storage, and with accessTTL so that the
// access token expires during the test. The site root "site" resolves in
// the working directory, where examples/site is copied with every file a
// day old: a browser would reuse such a file_server answer from its cache
// for hours (a tenth of its age) unless told not to.
func startExampleSite(t *testing.T, accessTTL string) *caddyProc {
	t.Helper()
	src, err := os.ReadFile("../examples/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	siteDir, err := filepath.Abs("../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	p := &caddyProc{t: t, bin: caddyBinary(t), dir: t.TempDir(), Port: testenv.FreePort(t),
		env: []string{"TOKEN_AUTH_SECRET=example-site-test-secret-0123456789abcdef"}}
	p.BaseURL = fmt.Sprintf("http://localhost:%d", p.Port)
	p.adminURL = fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))

	cfg := string(src)
	replaceOnce := func(old, new string) {
		t.Helper()
		if n := strings.Count(cfg, old); n != 1 {
			t.Fatalf("examples/Caddyfile has %q %d times, want once: update startExampleSite", old, n)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	replaceOnce("http://localhost:8080 {", fmt.Sprintf("http://localhost:%d {", p.Port))
	replaceOnce("token_auth @private {", "token_auth @private {\n\t\taccess_ttl "+accessTTL)
	globals := fmt.Sprintf("{\n\tadmin %s\n\tstorage file_system %s\n}\n\n",
		strings.TrimPrefix(p.adminURL, "http://"), filepath.Join(p.dir, "storage"))
	if err := os.WriteFile(filepath.Join(p.dir, "Caddyfile"), []byte(globals+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	copyAgedTree(t, siteDir, filepath.Join(p.dir, "examples", "site"), 24*time.Hour)
	p.start()
	t.Cleanup(p.stop)
	return p
}

// copyAgedTree copies the files under src to dst, each modified age ago.
func copyAgedTree(t *testing.T, src, dst string, age time.Duration) {
	t.Helper()
	old := time.Now().Add(-age)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
		return os.Chtimes(out, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}
