package e2e

// End-to-end tests of signing in with an identity provider: a real Caddy
// process (harness_test.go) and a real OpenID provider process built from
// tests/oidc-provider (zitadel/oidc's OP), the browser played by Go's
// HTTP client with a cookie jar posting the provider's own login form.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

var (
	oidcProviderOnce sync.Once
	oidcProviderBin  string
	oidcProviderErr  error
)

// oidcProviderBinary builds tests/oidc-provider (its own module) once per
// test process. Without the module's dependencies at hand the tests are
// skipped, except under CI, where that fails them.
func oidcProviderBinary(t *testing.T) string {
	t.Helper()
	oidcProviderOnce.Do(func() {
		dir, err := os.MkdirTemp("", "token-auth-oidc-")
		if err != nil {
			oidcProviderErr = err
			return
		}
		oidcProviderBin = filepath.Join(dir, "oidc-provider")
		cmd := exec.Command("go", "build", "-o", oidcProviderBin, ".")
		cmd.Dir = filepath.Join("..", "tests", "oidc-provider")
		if out, err := cmd.CombinedOutput(); err != nil {
			oidcProviderErr = fmt.Errorf("building tests/oidc-provider: %v\n%s", err, out)
		}
	})
	if oidcProviderErr != nil {
		testenv.Need(t, oidcProviderErr.Error())
	}
	return oidcProviderBin
}

// oidcProviderUsers are the provider's accounts: alice's verified address
// is a realm user's; mallory claims it unverified; carol is at a domain
// allow_domain admits.
const oidcProviderUsers = `{
	"alice":   {"ID":"alice-op","Username":"alice","Password":"alice-op-pw","FirstName":"Alice","LastName":"Op","Email":"alice@example.com","EmailVerified":true,"PreferredLanguage":"en"},
	"mallory": {"ID":"mallory-op","Username":"mallory","Password":"mallory-op-pw","FirstName":"Mal","LastName":"Lory","Email":"alice@example.com","EmailVerified":false,"PreferredLanguage":"en"},
	"carol":   {"ID":"carol-op","Username":"carol","Password":"carol-op-pw","FirstName":"Carol","LastName":"Partner","Email":"carol@partner.example","EmailVerified":true,"PreferredLanguage":"en"}
}`

// opProcess is a running provider process.
type opProcess struct {
	URL string
	cmd *exec.Cmd
}

// startOIDCProvider starts the provider on port for the Caddy instances
// at callbacks (their base URLs); back-channel logouts go to the first.
func startOIDCProvider(t *testing.T, port int, callbacks ...string) *opProcess {
	t.Helper()
	bin := oidcProviderBinary(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	// the example storage keys users by their ID
	byID := strings.NewReplacer(`"alice":`, `"alice-op":`, `"mallory":`, `"mallory-op":`, `"carol":`, `"carol-op":`).Replace(oidcProviderUsers)
	if err := os.WriteFile(users, []byte(byID), 0o600); err != nil {
		t.Fatal(err)
	}
	var redirects []string
	for _, c := range callbacks {
		redirects = append(redirects, c+"/authentication/idp/test/callback")
	}
	p := &opProcess{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	logFile, err := os.Create(filepath.Join(dir, "provider.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	p.cmd = exec.Command(bin, "-port", fmt.Sprint(port), "-users", users, "-client-id", "web", "-client-secret", "web-secret",
		"-redirect", strings.Join(redirects, ","), "-backchannel", callbacks[0]+"/authentication/idp/test/backchannel-logout")
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("provider log:\n%s", out)
		}
	})
	waitStatus(t, http.DefaultClient, p.URL+"/.well-known/openid-configuration", http.StatusOK, "the provider answering discovery")
	return p
}

// idpE2ESite guards /private/ and knows the provider `test` at issuer.
func idpE2ESite(t *testing.T, issuer, store string) string {
	return fmt.Sprintf(`
	token_auth /private/* {
		realm idp-e2e
		signing_key hs256 %s
		%s
		reuse_grace 0
		user alice %s {
			email alice@example.com
		}
		identity_provider test {
			issuer        %s
			client_id     web
			client_secret {env.TEST_IDP_SECRET}
			label         Test OP
			allow_domain  partner.example
			roles         partner
			timeout       5s
		}
	}
	handle /private/whoami {
		header Content-Type application/json
		respond `+"`"+`{"id":"{http.auth.user.id}","idp":"{http.auth.user.idp}"}`+"`"+` 200
	}
	respond /private/* "private for {http.auth.user.id} via {http.auth.user.idp}" 200
	respond "public" 200
`, e2eSecret, store, testenv.Hash(t, e2ePassword), issuer)
}

var idpE2EEnv = []string{"TEST_IDP_SECRET=web-secret"}

// browser is a cookie-keeping HTTP client.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", "text/html")
	return b.send(req)
}

func (b *browser) send(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	res, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return res, string(body)
}

var buttonPattern = regexp.MustCompile(`<a class="idp" href="([^"]+)">Sign in with Test OP</a>`)
var authRequestIDPattern = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signInAtProvider follows the login page's button to the provider's
// login form and posts it as user; it returns the final answer (after
// Caddy's callback) and its body.
func (b *browser) signInAtProvider(caddyURL, providerURL, startPath, user, password string) (*http.Response, string) {
	b.t.Helper()
	res, body := b.get(caddyURL + startPath)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Request.URL.String(), providerURL+"/login/username") {
		b.t.Fatalf("provider login form: %d at %s\n%s", res.StatusCode, res.Request.URL, body)
	}
	m := authRequestIDPattern.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no auth request id in the provider's form:\n%s", body)
	}
	form := url.Values{"id": {m[1]}, "username": {user}, "password": {password}}
	req, _ := http.NewRequest("POST", providerURL+"/login/username", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	return b.send(req)
}

// TestE2EIdPSignIn: the login page's button, the provider's own login,
// and back on the private page with cookies; refresh and reuse detection
// on that session; a person the realm does not know refused with the
// login page's message; allow_domain admitting another.
func TestE2EIdPSignIn(t *testing.T) {
	opPort := testenv.FreePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", opPort)
	// Caddy starts while the provider is not there yet: discovery is retried
	caddy := startCaddy(t, "", idpE2ESite(t, issuer, "store memory"), caddyOptions{Env: idpE2EEnv})
	b := newBrowser(t)
	if res, body := b.get(caddy.BaseURL + "/authentication/idp/test"); res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be reached") {
		t.Fatalf("before the provider is up: %d %s", res.StatusCode, body)
	}
	op := startOIDCProvider(t, opPort, caddy.BaseURL)
	waitIdPReady(t, caddy) // discovery retried

	// the private page sends the browser to the login page, which has the button
	res, body := b.get(caddy.BaseURL + "/private/page")
	m := buttonPattern.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("login page: %d\n%s", res.StatusCode, body)
	}
	start := strings.ReplaceAll(m[1], "&amp;", "&")
	res, body = b.signInAtProvider(caddy.BaseURL, op.URL, start, "alice", "alice-op-pw")
	if res.StatusCode != http.StatusOK || body != "private for alice via test" || res.Request.URL.Path != "/private/page" {
		t.Fatalf("after signing in: %d at %s: %s\n%s", res.StatusCode, res.Request.URL, body, caddy.Logs())
	}

	// refresh with the cookie, as a page load after the access token expired would
	u, _ := url.Parse(caddy.BaseURL + "/authentication")
	var refreshCookie string
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "refresh_token" {
			refreshCookie = c.Value
		}
	}
	first := caddy.refresh(refreshCookie)
	if first.Status != http.StatusCreated || testenv.Claim(t, first.str("accessToken"), "idp") != "test" {
		t.Fatalf("refresh: %d %s", first.Status, first.Raw)
	}
	if again := caddy.refresh(refreshCookie); again.Status != http.StatusUnauthorized || !strings.Contains(string(again.Raw), "refresh_token_reused") {
		t.Fatalf("reuse: %d %s", again.Status, again.Raw)
	}

	// an unverified address never matches the realm user
	res, body = newBrowser(t).signInAtProvider(caddy.BaseURL, op.URL, "/authentication/idp/test", "mallory", "mallory-op-pw")
	if res.Request.URL.Path != "/authentication" || res.Request.URL.Query().Get("error") != "idp_failed" || !strings.Contains(body, "did not work") {
		t.Fatalf("mallory: %d at %s", res.StatusCode, res.Request.URL)
	}
	if !strings.Contains(caddy.Logs(), `"msg":"login failed","client_ip":"127.0.0.1"`) {
		t.Fatal("the refusal is not logged as a failed login")
	}
	// allow_domain admits carol as test:<sub> with the configured roles
	res, body = newBrowser(t).signInAtProvider(caddy.BaseURL, op.URL, "/authentication/idp/test?redirect=/private/c", "carol", "carol-op-pw")
	if body != "private for test:carol-op via test" {
		t.Fatalf("carol: %d %s", res.StatusCode, body)
	}
}

// TestE2EIdPFragmentMode: mode=fragment gives a single-page app tokens in
// the fragment; the guard and the endpoint's strategy "jwt" (Feathers'
// reAuthenticate) accept them, and they refresh.
func TestE2EIdPFragmentMode(t *testing.T) {
	opPort := testenv.FreePort(t)
	caddy := startCaddy(t, "", idpE2ESite(t, fmt.Sprintf("http://127.0.0.1:%d", opPort), "store memory"), caddyOptions{Env: idpE2EEnv})
	op := startOIDCProvider(t, opPort, caddy.BaseURL)
	waitIdPReady(t, caddy)
	b := newBrowser(t)
	b.client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Fragment != "" {
			return http.ErrUseLastResponse // the app would read it now
		}
		return nil
	}
	res, _ := b.signInAtProvider(caddy.BaseURL, op.URL, "/authentication/idp/test?redirect=/app/&mode=fragment", "alice", "alice-op-pw")
	loc, _ := url.Parse(res.Header.Get("Location"))
	frag, _ := url.ParseQuery(loc.Fragment)
	if res.StatusCode != http.StatusSeeOther || loc.Path != "/app/" || frag.Get("access_token") == "" || len(res.Cookies()) != 0 {
		t.Fatalf("fragment answer: %d %s cookies %v", res.StatusCode, loc, res.Cookies())
	}
	if p := caddy.private(frag.Get("access_token")); p.Status != http.StatusOK || !strings.Contains(string(p.Raw), "private for alice via test") {
		t.Fatalf("guard: %d %s", p.Status, p.Raw)
	}
	reauth := caddy.do("POST", "/authentication", map[string]string{"strategy": "jwt", "accessToken": frag.Get("access_token")})
	if reauth.Status != http.StatusCreated || reauth.str("user.id") != "alice" || reauth.str("authentication.payload.idp") != "test" {
		t.Fatalf("reAuthenticate: %d %s", reauth.Status, reauth.Raw)
	}
	if r := caddy.refresh(frag.Get("refresh_token")); r.Status != http.StatusCreated {
		t.Fatalf("refresh: %d %s", r.Status, r.Raw)
	}
	t.Run("feathers handleOAuthCallback", func(t *testing.T) { runFeathersOAuth(t, caddy, "#"+loc.Fragment) })
}

// runFeathersOAuth runs tests/feathers/oauth.js, the real Feathers client
// landing on the page the fragment sign-in sent the browser to.
func runFeathersOAuth(t *testing.T, caddy *caddyProc, hash string) {
	client := nodeClient(t, "feathers", "@feathersjs/authentication-client", "test.d/setup-node.sh")
	out := client.run(t, caddy, "oauth.js", "HASH="+hash)
	if !strings.Contains(string(out), "ok: feathers oauth callback complete") {
		t.Fatalf("feathers oauth client did not finish:\n%s", out)
	}
}

// waitIdPReady waits for Caddy's discovery of the provider: its button
// redirects instead of answering 503.
func waitIdPReady(t *testing.T, caddy *caddyProc) {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	waitStatus(t, noFollow, caddy.BaseURL+"/authentication/idp/test", http.StatusFound, "the provider's discovery")
}

// waitStatus waits (bounded) until GET u answers want.
func waitStatus(t *testing.T, client *http.Client, u string, want int, what string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, what, func() bool {
		res, err := client.Get(u)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == want
	})
}

// TestE2EIdPBackchannelLogoutCluster: two Caddy instances share Redis; a
// sign-in started on one finishes on the other; when the person signs out
// at the provider, its back-channel logout (delivered to the first
// instance) revokes the session, and both instances refuse its access
// token within 5 s; the replayed logout token is refused.
func TestE2EIdPBackchannelLogoutCluster(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	opPort := testenv.FreePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", opPort)
	store := "store redis " + redisURL
	a := startCaddy(t, "", idpE2ESite(t, issuer, store), caddyOptions{Env: idpE2EEnv})
	bNode := startCaddy(t, "", idpE2ESite(t, issuer, store), caddyOptions{Env: idpE2EEnv})
	op := startOIDCProvider(t, opPort, a.BaseURL, bNode.BaseURL)
	waitIdPReady(t, a)
	waitIdPReady(t, bNode)

	// start on a; the provider sends the browser back to a's callback,
	// which the browser takes to b instead: b finishes from the shared state
	br := newBrowser(t)
	br.client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), a.BaseURL+"/authentication/idp/test/callback") {
			req.URL.Host = strings.TrimPrefix(bNode.BaseURL, "http://")
			req.Host = req.URL.Host
		}
		return nil
	}
	res, body := br.signInAtProvider(a.BaseURL, op.URL, "/authentication/idp/test?redirect=/private/x", "alice", "alice-op-pw")
	if body != "private for alice via test" || !strings.HasPrefix(res.Request.URL.String(), bNode.BaseURL) {
		t.Fatalf("cross-instance sign-in: %d at %s: %s", res.StatusCode, res.Request.URL, body)
	}
	var access string
	u, _ := url.Parse(bNode.BaseURL)
	for _, c := range br.client.Jar.Cookies(u) {
		if c.Name == "access_token" {
			access = c.Value
		}
	}
	for _, node := range []*caddyProc{a, bNode} {
		if s := node.private(access).Status; s != http.StatusOK {
			t.Fatalf("before logout: %d", s)
		}
	}

	// the person signs out at the provider
	lres, err := http.Post(op.URL+"/test/backchannel-logout?user=alice-op", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var delivered struct {
		Status      int    `json:"status"`
		LogoutToken string `json:"logout_token"`
	}
	_ = json.NewDecoder(lres.Body).Decode(&delivered)
	lres.Body.Close()
	if delivered.Status != http.StatusOK {
		t.Fatalf("back-channel logout answered %d\n%s", delivered.Status, a.Logs())
	}
	for _, node := range []*caddyProc{a, bNode} {
		testenv.Eventually(t, 5*time.Second, "the access token refused after back-channel logout", func() bool {
			return node.private(access).Status == http.StatusUnauthorized
		})
	}
	// replayed, to either instance
	for _, node := range []*caddyProc{a, bNode} {
		rr, err := http.PostForm(node.BaseURL+"/authentication/idp/test/backchannel-logout", url.Values{"logout_token": {delivered.LogoutToken}})
		if err != nil {
			t.Fatal(err)
		}
		rr.Body.Close()
		if rr.StatusCode != http.StatusBadRequest {
			t.Fatalf("replayed logout token: %d", rr.StatusCode)
		}
	}
	// forged: not signed by the provider
	forged := forgeHS256(t, "forged-kid", "logout+jwt", func(_ map[string]any, c jwt.MapClaims) {
		c["iss"], c["aud"], c["sub"] = issuer, "web", "alice-op"
		c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}
	})
	rr, _ := http.PostForm(a.BaseURL+"/authentication/idp/test/backchannel-logout", url.Values{"logout_token": {forged}})
	rr.Body.Close()
	if rr.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged logout token: %d", rr.StatusCode)
	}
}
