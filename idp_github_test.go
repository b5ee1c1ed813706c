package tokenauth

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// fakeGitHub speaks GitHub's OAuth app endpoints and the two REST API
// resources the GitHub kind reads, in GitHub's shapes.
type fakeGitHub struct {
	*httptest.Server
	mu        sync.Mutex
	challenge string
	emails    string // the /user/emails answer
	userCode  int    // the /user status
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	gh := &fakeGitHub{userCode: http.StatusOK,
		emails: `[{"email":"alice@users.noreply.github.com","verified":true,"primary":false,"visibility":null},` +
			`{"email":"alice@example.com","verified":true,"primary":true,"visibility":"public"}]`}
	gh.Server = httptest.NewServer(http.HandlerFunc(gh.serve))
	t.Cleanup(gh.Close)
	return gh
}

func (gh *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	gh.mu.Lock()
	defer gh.mu.Unlock()
	switch r.URL.Path {
	case "/login/oauth/access_token":
		_ = r.ParseForm()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		w.Header().Set("Content-Type", "application/json")
		// GitHub answers a bad code with 200 and an error member
		if r.PostForm.Get("code") != "gh-code" || r.PostForm.Get("client_secret") != "gh-secret" ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != gh.challenge {
			_, _ = w.Write([]byte(`{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"gho_test","token_type":"bearer","scope":"read:user,user:email"}`))
	case "/api/user", "/api/user/emails":
		if r.Header.Get("Authorization") != "Bearer gho_test" {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/user" {
			w.WriteHeader(gh.userCode)
			_, _ = w.Write([]byte(`{"login":"octo-alice","id":583231,"name":"Alice Octo","email":null}`))
			return
		}
		_, _ = w.Write([]byte(gh.emails))
	default:
		http.NotFound(w, r)
	}
}

func githubHandler(t *testing.T, gh *fakeGitHub) *TokenAuth {
	ta, _ := idpHandler(t, &fakeOP{Server: &httptest.Server{}}, func(ta *TokenAuth) {
		ta.IdentityProviders = []IdentityProvider{{
			Name: "gh", GitHub: &GitHubProvider{BaseURL: gh.URL, APIURL: gh.URL + "/api"},
			ClientID: "gh-client", ClientSecret: "gh-secret", AllowDomains: []string{"partner.example"},
			Timeout: caddy.Duration(defaultIdPTimeout),
		}}
	})
	return ta
}

// githubSignIn goes through the GitHub flow and returns the callback's answer.
func githubSignIn(t *testing.T, ta *TokenAuth, gh *fakeGitHub, code string) *httptest.ResponseRecorder {
	t.Helper()
	w := serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/gh?redirect=/in"))
	loc, _ := url.Parse(w.Header().Get("Location"))
	q := loc.Query()
	if w.Code != http.StatusFound || !strings.HasPrefix(loc.String(), gh.URL+"/login/oauth/authorize?") || q.Get("client_id") != "gh-client" ||
		q.Get("code_challenge_method") != "S256" || q.Get("scope") != "read:user user:email" || q.Get("state") == "" ||
		q.Get("redirect_uri") != "http://example.com/authentication/idp/gh/callback" {
		t.Fatalf("authorize: %d %s", w.Code, loc)
	}
	gh.mu.Lock()
	gh.challenge = q.Get("code_challenge")
	gh.mu.Unlock()
	var binding *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == idpBindingCookie {
			binding = c
		}
	}
	return serveTeapot(t, ta, idpRequest("GET", "/authentication/idp/gh/callback?code="+code+"&state="+q.Get("state"), binding))
}

// TestGitHubSignIn: the primary verified address of the GitHub account
// maps to the realm user; the session carries idp "gh".
func TestGitHubSignIn(t *testing.T) {
	gh := newFakeGitHub(t)
	ta := githubHandler(t, gh)
	w := githubSignIn(t, ta, gh, "gh-code")
	access, _ := sessionCookies(w)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/in" || access == nil {
		t.Fatalf("callback: %d %s", w.Code, w.Header().Get("Location"))
	}
	if c := claimsOf(t, access.Value); c["sub"] != "alice" || c["idp"] != "gh" {
		t.Fatalf("claims %v", c)
	}

	// admitted by allow_domain: the id is gh:<numeric GitHub id>
	gh.mu.Lock()
	gh.emails = `[{"email":"al@partner.example","verified":true,"primary":true}]`
	gh.mu.Unlock()
	access, _ = sessionCookies(githubSignIn(t, ta, gh, "gh-code"))
	if c := claimsOf(t, access.Value); c["sub"] != "gh:583231" || c["name"] != "Alice Octo" {
		t.Fatalf("claims %v", c)
	}
	// no back-channel logout for GitHub
	if w := postLogoutTo(t, ta, "gh"); w.Code != http.StatusNotFound {
		t.Fatalf("github back-channel logout: %d", w.Code)
	}
}

func postLogoutTo(t *testing.T, ta *TokenAuth, name string) *httptest.ResponseRecorder {
	r := idpRequestBody("POST", "/authentication/idp/"+name+"/backchannel-logout", strings.NewReader("logout_token=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return serveTeapot(t, ta, r)
}

// TestGitHubRefusals: unverified addresses never count; a bad code and a
// failing API end on the login page.
func TestGitHubRefusals(t *testing.T) {
	gh := newFakeGitHub(t)
	ta := githubHandler(t, gh)
	wantRefused(t, githubSignIn(t, ta, gh, "wrong-code"), "/authentication?error=idp_failed&redirect=%2Fin")

	gh.mu.Lock()
	gh.emails = `[{"email":"alice@example.com","verified":false,"primary":true},{"email":"x@partner.example","verified":false,"primary":false}]`
	gh.mu.Unlock()
	wantRefused(t, githubSignIn(t, ta, gh, "gh-code"), "/authentication?error=idp_failed&redirect=%2Fin")

	gh.mu.Lock()
	gh.userCode = http.StatusInternalServerError
	gh.mu.Unlock()
	wantRefused(t, githubSignIn(t, ta, gh, "gh-code"), "/authentication?error=idp_failed&redirect=%2Fin")
}
