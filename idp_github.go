package tokenauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
)

// GitHub's OAuth apps (GitHub does not speak OpenID Connect): the
// authorization code flow with PKCE at /login/oauth/authorize and
// /login/oauth/access_token, then the person from the REST API's /user
// (a stable numeric id) and /user/emails (only verified addresses count).

const (
	defaultGitHubURL    = "https://github.com"
	defaultGitHubAPIURL = "https://api.github.com"
	// maxGitHubAnswer bounds what is read of an API answer.
	maxGitHubAnswer = 1 << 20
)

type githubBackend struct {
	cfg    *IdentityProvider
	oauth  oauth2.Config
	apiURL string
	client *http.Client
}

func newGitHubBackend(p *IdentityProvider) *githubBackend {
	base, api := defaultGitHubURL, defaultGitHubAPIURL
	if p.GitHub.BaseURL != "" {
		base = strings.TrimSuffix(p.GitHub.BaseURL, "/")
	}
	if p.GitHub.APIURL != "" {
		api = strings.TrimSuffix(p.GitHub.APIURL, "/")
	}
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = []string{"read:user", "user:email"}
	}
	return &githubBackend{
		cfg: p,
		oauth: oauth2.Config{
			ClientID: p.ClientID, ClientSecret: p.ClientSecret, Scopes: scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL: base + "/login/oauth/authorize", TokenURL: base + "/login/oauth/access_token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		apiURL: api,
		client: &http.Client{Timeout: p.timeout()},
	}
}

func (g *githubBackend) stop() {}

func (g *githubBackend) authURL(f *idpFlow, state string) (string, error) {
	oc := g.oauth
	oc.RedirectURL = f.RedirectURI
	return oc.AuthCodeURL(state, oauth2.S256ChallengeOption(f.Verifier)), nil
}

// githubUser is the part of GET /user used here.
type githubUser struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

// githubEmail is one entry of GET /user/emails.
type githubEmail struct {
	Email    string `json:"email"`
	Verified bool   `json:"verified"`
	Primary  bool   `json:"primary"`
}

func (g *githubBackend) identify(ctx context.Context, code string, f *idpFlow) (*federatedIdentity, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, g.client)
	oc := g.oauth
	oc.RedirectURL = f.RedirectURI
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, idpRefused("code exchange: " + err.Error())
	}
	var user githubUser
	if err := g.get(ctx, tok.AccessToken, "/user", &user); err != nil {
		return nil, err
	}
	if user.ID == 0 {
		return nil, idpRefused("github /user: no id")
	}
	var emails []githubEmail
	if err := g.get(ctx, tok.AccessToken, "/user/emails", &emails); err != nil {
		return nil, err
	}
	ident := &federatedIdentity{Subject: strconv.FormatInt(user.ID, 10), Name: user.Name}
	if ident.Name == "" {
		ident.Name = user.Login
	}
	if e, ok := verifiedEmail(emails); ok {
		ident.Email, ident.EmailVerified = e, true
	}
	return ident, nil
}

// verifiedEmail picks the primary address if it is verified, else the
// first verified one.
func verifiedEmail(emails []githubEmail) (string, bool) {
	for _, e := range emails {
		if e.Primary && e.Verified {
			return e.Email, true
		}
	}
	for _, e := range emails {
		if e.Verified {
			return e.Email, true
		}
	}
	return "", false
}

// get reads one API resource as JSON.
func (g *githubBackend) get(ctx context.Context, token, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.apiURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	res, err := g.client.Do(req)
	if err != nil {
		return idpRefused("github " + path + ": " + err.Error())
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxGitHubAnswer))
	if err != nil {
		return idpRefused("github " + path + ": " + err.Error())
	}
	if res.StatusCode != http.StatusOK {
		return idpRefused(fmt.Sprintf("github %s: status %d", path, res.StatusCode))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return idpRefused("github " + path + ": " + err.Error())
	}
	return nil
}
