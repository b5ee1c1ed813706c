package tokenauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// Sign in with an identity provider (OpenID Connect, or GitHub's OAuth
// apps). The browser is sent to the provider from {endpoint}/idp/<name>,
// comes back to {endpoint}/idp/<name>/callback, and leaves with a session
// of this realm opened exactly as a password login opens one. The
// provider's own tokens are used once, to learn who signed in, and never
// kept.

// IdentityProvider is one `identity_provider` block: a provider people
// may sign in with instead of a password.
type IdentityProvider struct {
	// Name identifies the provider in URLs ({endpoint}/idp/<name>, and the
	// redirect URI to register with the provider,
	// {endpoint}/idp/<name>/callback) and in the user id of people admitted
	// by allow_domain/allow_email (`<name>:<provider's subject>`). Letters,
	// digits, `-` and `_`.
	Name string `json:"name"`

	// Issuer is the OpenID Connect issuer URL, e.g.
	// `https://accounts.google.com`; its discovery document
	// (`/.well-known/openid-configuration`) gives everything else. Exactly
	// one of Issuer and GitHub is set.
	Issuer string `json:"issuer,omitempty"`

	// GitHub makes this a GitHub OAuth app (GitHub does not speak OpenID
	// Connect): the person is read from the API's /user and /user/emails
	// (only verified addresses count).
	GitHub *GitHubProvider `json:"github,omitempty"`

	// ClientID is the client id the provider gave this site.
	ClientID string `json:"client_id"`

	// ClientSecret is the client secret; write a placeholder such as
	// `{env.GOOGLE_CLIENT_SECRET}` rather than the secret itself.
	ClientSecret string `json:"client_secret,omitempty"`

	// Scopes asked for. Default: `openid email profile` (GitHub:
	// `read:user user:email`).
	Scopes []string `json:"scopes,omitempty"`

	// Label is the provider's name on the login page's button: "Sign in
	// with <label>". Default: the name.
	Label string `json:"label,omitempty"`

	// AllowDomains admits people whose verified email address is in one of
	// these domains even without a realm user of that address; they get
	// the id `<name>:<subject>` and Roles. Default: none.
	AllowDomains []string `json:"allow_domains,omitempty"`

	// AllowEmails admits people with one of these verified addresses, as
	// AllowDomains does. Default: none. Without either, only people whose
	// verified email matches a realm user's email may sign in (as that user).
	AllowEmails []string `json:"allow_emails,omitempty"`

	// Roles are given to the people admitted by AllowDomains/AllowEmails.
	Roles []string `json:"roles,omitempty"`

	// Timeout bounds each request to the provider (discovery, code
	// exchange, user info); a slower provider fails the sign-in instead of
	// holding it. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// GitHubProvider holds the addresses of GitHub (or GitHub Enterprise).
type GitHubProvider struct {
	// BaseURL serves /login/oauth/authorize and /login/oauth/access_token.
	// Default: `https://github.com`.
	BaseURL string `json:"base_url,omitempty"`
	// APIURL serves /user and /user/emails. Default:
	// `https://api.github.com` (GitHub Enterprise: `<base>/api/v3`).
	APIURL string `json:"api_url,omitempty"`
}

const (
	defaultIdPTimeout = 10 * time.Second
	// idpFlowTTL is how long a started sign-in may take at the provider.
	idpFlowTTL = 10 * time.Minute
	// idpBindingCookie ties a started sign-in to the browser that started
	// it, so that a callback URL handed to someone else is worthless.
	idpBindingCookie = "token_auth_idp"
	// The KV kinds and key prefixes of this file.
	idpStatePrefix  = "idp:state:"
	idpUserKind     = "idp-user" // a person admitted by allow_*: owner user id, id "profile"
	idpSIDKind      = "idp-sid"  // owner <name>:<provider sid>, id our sid
	idpSubjectKind  = "idp-sub"  // owner <name>:<provider sub>, id our sid
	idpProfileID    = "profile"
	amrFederated    = "fed" // RFC 8176
	idpLoginFailure = "idp_failed"
)

var idpNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validate checks one provider's configuration.
func (p *IdentityProvider) validate() error {
	if !idpNamePattern.MatchString(p.Name) {
		return fmt.Errorf("identity_provider %q: the name may only hold letters, digits, - and _", p.Name)
	}
	switch {
	case p.Issuer == "" && p.GitHub == nil:
		return fmt.Errorf("identity_provider %s: needs `issuer <url>` or `github`", p.Name)
	case p.Issuer != "" && p.GitHub != nil:
		return fmt.Errorf("identity_provider %s: `issuer` and `github` exclude each other", p.Name)
	case p.ClientID == "":
		return fmt.Errorf("identity_provider %s: client_id is required", p.Name)
	case p.Timeout < 0:
		return fmt.Errorf("identity_provider %s: timeout must be positive", p.Name)
	}
	if p.Issuer != "" && !strings.Contains(p.Issuer, "{") {
		if u, err := url.Parse(p.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("identity_provider %s: issuer must be an http(s) URL, got %q", p.Name, p.Issuer)
		}
	}
	for _, d := range p.AllowDomains {
		if d == "" || strings.Contains(d, "@") {
			return fmt.Errorf("identity_provider %s: allow_domain takes domains such as example.com, got %q", p.Name, d)
		}
	}
	for _, e := range p.AllowEmails {
		if !strings.Contains(e, "@") {
			return fmt.Errorf("identity_provider %s: allow_email takes addresses, got %q", p.Name, e)
		}
	}
	return nil
}

// label is the button's text after "Sign in with".
func (p *IdentityProvider) label() string {
	if p.Label != "" {
		return p.Label
	}
	return p.Name
}

// timeout is the bound on one request to the provider.
func (p *IdentityProvider) timeout() time.Duration {
	if p.Timeout > 0 {
		return time.Duration(p.Timeout)
	}
	return defaultIdPTimeout
}

// admits says whether a verified address is let in by allow_*.
func (p *IdentityProvider) admits(email string) bool {
	email = strings.ToLower(email)
	for _, e := range p.AllowEmails {
		if strings.EqualFold(e, email) {
			return true
		}
	}
	_, domain, _ := strings.Cut(email, "@")
	for _, d := range p.AllowDomains {
		if strings.EqualFold(strings.TrimPrefix(d, "@"), domain) {
			return true
		}
	}
	return false
}

// federatedIdentity is who the provider says signed in.
type federatedIdentity struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	// SID is the provider's session id (OIDC `sid`), for back-channel logout.
	SID string
}

// idpBackend speaks one provider's protocol.
type idpBackend interface {
	// authURL is where the browser goes to sign in; errIdPNotReady while
	// the provider's configuration is not known yet.
	authURL(f *idpFlow, state string) (string, error)
	// identify exchanges the authorization code and tells who signed in,
	// having checked everything the protocol asks.
	identify(ctx context.Context, code string, f *idpFlow) (*federatedIdentity, error)
	// stop ends background work (discovery retries).
	stop()
}

// logoutVerifier is implemented by backends that support OIDC
// Back-Channel Logout.
type logoutVerifier interface {
	verifyLogout(ctx context.Context, raw string) (*logoutClaims, error)
}

// errIdPNotReady: the provider's discovery has not succeeded yet.
var errIdPNotReady = errors.New("identity provider not reachable yet")

// idpRuntime is a configured provider with its backend.
type idpRuntime struct {
	cfg     *IdentityProvider
	backend idpBackend
}

// idpFlow is a started sign-in, kept in the realm's KV under its state so
// that any instance can finish it, and taken (deleted) by the callback.
type idpFlow struct {
	Provider    string `json:"provider"`
	Nonce       string `json:"nonce,omitempty"`
	Verifier    string `json:"verifier"` // PKCE code_verifier
	RedirectURI string `json:"redirect_uri"`
	Redirect    string `json:"redirect"`
	Fragment    bool   `json:"fragment,omitempty"`
	// Binding is the hash of the browser's binding cookie.
	Binding string `json:"binding"`
}

// provisionIdentityProviders resolves placeholders, validates the
// providers and starts their backends (discovery never blocks a start for
// longer than one bounded attempt).
func (ta *TokenAuth) provisionIdentityProviders() error {
	if len(ta.IdentityProviders) == 0 {
		return nil
	}
	repl := caddy.NewReplacer()
	ta.idps = make(map[string]*idpRuntime, len(ta.IdentityProviders))
	for i := range ta.IdentityProviders {
		p := &ta.IdentityProviders[i]
		p.Issuer = repl.ReplaceKnown(p.Issuer, "")
		p.ClientID = repl.ReplaceKnown(p.ClientID, "")
		p.ClientSecret = repl.ReplaceKnown(p.ClientSecret, "")
		if err := p.validate(); err != nil {
			return err
		}
		if _, dup := ta.idps[p.Name]; dup {
			return fmt.Errorf("identity_provider %s is defined twice", p.Name)
		}
		var backend idpBackend
		if p.GitHub != nil {
			backend = newGitHubBackend(p)
		} else {
			backend = newOIDCBackend(p, ta.logger)
		}
		ta.idps[p.Name] = &idpRuntime{cfg: p, backend: backend}
	}
	return nil
}

// stopIdentityProviders ends the backends' background work.
func (ta *TokenAuth) stopIdentityProviders() {
	for _, p := range ta.idps {
		p.backend.stop()
	}
}

// serveIdPEndpoint answers {endpoint}/idp/...; handled is false for
// other paths.
func (ta *TokenAuth) serveIdPEndpoint(w http.ResponseWriter, r *http.Request, sub string) (handled bool, err error) {
	rest, ok := strings.CutPrefix(sub, "/idp/")
	if !ok {
		return false, nil
	}
	name, action, _ := strings.Cut(rest, "/")
	p := ta.idps[name]
	if p == nil {
		return true, writeError(w, newAPIError(http.StatusNotFound, "Unknown identity provider"))
	}
	method := map[string]string{"": http.MethodGet, "callback": http.MethodGet, "backchannel-logout": http.MethodPost}
	want, known := method[action]
	switch {
	case !known:
		return true, writeError(w, newAPIError(http.StatusNotFound, "Not found"))
	case r.Method != want && !(want == http.MethodGet && r.Method == http.MethodHead):
		w.Header().Set("Allow", want)
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	case action == "":
		return true, ta.startIdPLogin(w, r, p)
	case action == "callback":
		return true, ta.finishIdPLogin(w, r, p)
	default:
		return true, ta.handleBackchannelLogout(w, r, p)
	}
}

// startIdPLogin answers GET {endpoint}/idp/<name>?redirect=<path>[&mode=fragment]:
// 302 to the provider with a fresh state, nonce and PKCE verifier.
func (ta *TokenAuth) startIdPLogin(w http.ResponseWriter, r *http.Request, p *idpRuntime) error {
	binding := cookieValue(r, idpBindingCookie)
	if len(binding) < 22 || len(binding) > 64 {
		binding = randomID()
	}
	q := r.URL.Query()
	flow := &idpFlow{
		Provider:    p.cfg.Name,
		Nonce:       randomID(),
		Verifier:    oauth2.GenerateVerifier(),
		RedirectURI: ta.idpCallbackURL(r, p.cfg.Name),
		Redirect:    sanitizeRedirect(q.Get("redirect")),
		Fragment:    q.Get("mode") == "fragment",
		Binding:     bindingHash(binding),
	}
	state := randomID()
	location, err := p.backend.authURL(flow, state)
	if errors.Is(err, errIdPNotReady) {
		ta.logger.Warn("identity provider not reachable; sign-in refused", zap.String("idp", p.cfg.Name), zap.String("client_ip", clientIP(r)))
		w.Header().Set("Retry-After", "30")
		return writeIdPPage(w, http.StatusServiceUnavailable, "Sign-in unavailable",
			fmt.Sprintf("%s cannot be reached right now. Please try again in a minute.", p.cfg.label()), ta.loginPageURL(flow.Redirect, "", ""))
	}
	if err != nil {
		return ta.answerError(w, r, err)
	}
	record, _ := json.Marshal(flow)
	if err := ta.realm.store.PutTemp(r.Context(), idpStatePrefix+state, record, idpFlowTTL); err != nil {
		return ta.answerError(w, r, err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: idpBindingCookie, Value: binding, Path: ta.Endpoint + "/idp/",
		MaxAge: int(idpFlowTTL / time.Second), HttpOnly: true, Secure: secureRequest(r),
		// Lax: the provider's redirect back is a top-level GET navigation.
		SameSite: http.SameSiteLaxMode,
	})
	return redirectTo(w, location, http.StatusFound)
}

// bindingHash is what the KV keeps of a browser's binding cookie.
func bindingHash(binding string) string {
	sum := sha256.Sum256([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// idpCallbackURL is the redirect URI to register with the provider.
func (ta *TokenAuth) idpCallbackURL(r *http.Request, name string) string {
	scheme := "http"
	if secureRequest(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host + ta.Endpoint + "/idp/" + name + "/callback"
}

// finishIdPLogin answers GET {endpoint}/idp/<name>/callback.
func (ta *TokenAuth) finishIdPLogin(w http.ResponseWriter, r *http.Request, p *idpRuntime) error {
	flow, problem, err := ta.takeIdPFlow(r, p.cfg.Name)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	if problem != "" {
		ta.logIdPRefusal(r, p.cfg.Name, "", problem)
		return writeIdPPage(w, http.StatusBadRequest, "Sign-in could not be completed",
			"This sign-in link is not valid any more (it was used already, has expired, or was started in another browser). Please start again.",
			ta.loginPageURL("", "", ""))
	}
	user, session, err := ta.signInFederated(r, p, flow)
	if err != nil {
		return ta.idpFailure(w, r, flow, err)
	}
	res, err := ta.issuePair(user, session, "oauth")
	if err != nil {
		return ta.idpFailure(w, r, flow, err)
	}
	if flow.Fragment {
		// for single-page apps (Feathers' handleOAuthCallback): no cookies
		path, _, _ := strings.Cut(flow.Redirect, "#")
		frag := url.Values{"access_token": {res.AccessToken}, "refresh_token": {res.RefreshToken}}
		return redirectTo(w, path+"#"+frag.Encode(), http.StatusSeeOther)
	}
	ta.setSessionCookies(w, r, res)
	return redirectTo(w, flow.Redirect, http.StatusSeeOther)
}

// takeIdPFlow consumes the callback's state: problem says why it is
// refused ("" when it is good); err is a store failure.
func (ta *TokenAuth) takeIdPFlow(r *http.Request, name string) (*idpFlow, string, error) {
	state := r.URL.Query().Get("state")
	if state == "" || len(state) > 128 {
		return nil, "state_missing", nil
	}
	record, found, err := ta.realm.store.TakeTemp(r.Context(), idpStatePrefix+state)
	if err != nil {
		return nil, "", err
	}
	if !found {
		return nil, "state_unknown_or_reused", nil
	}
	var flow idpFlow
	if err := json.Unmarshal(record, &flow); err != nil || flow.Provider != name {
		return nil, "state_of_another_provider", nil
	}
	got := bindingHash(cookieValue(r, idpBindingCookie))
	if subtle.ConstantTimeCompare([]byte(got), []byte(flow.Binding)) != 1 {
		return nil, "state_from_another_browser", nil
	}
	return &flow, "", nil
}

// errIdPRefused is a sign-in the provider or the allow-lists refused;
// the wrapped reason goes to the log.
var errIdPRefused = errors.New("identity provider sign-in refused")

func idpRefused(reason string) error { return fmt.Errorf("%w: %s", errIdPRefused, reason) }

// signInFederated turns the callback into a realm session.
func (ta *TokenAuth) signInFederated(r *http.Request, p *idpRuntime, flow *idpFlow) (*User, Session, error) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return nil, Session{}, idpRefused("provider error " + truncate(e, 64))
	}
	code := q.Get("code")
	if code == "" {
		return nil, Session{}, idpRefused("no code")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*p.cfg.timeout())
	defer cancel()
	ident, err := p.backend.identify(ctx, code, flow)
	if err != nil {
		return nil, Session{}, err
	}
	user, err := ta.admitFederated(r.Context(), p.cfg, ident)
	if err != nil {
		return nil, Session{}, err
	}
	session, err := ta.openSessionWith(r, user, SignIn{
		AMR: []string{amrFederated}, IdP: p.cfg.Name, IdPSID: ident.SID,
	})
	if err != nil {
		return nil, Session{}, err
	}
	if err := ta.rememberIdPSession(r.Context(), p.cfg.Name, ident, session.ID); err != nil {
		return nil, Session{}, err
	}
	ta.countLogin("success")
	ta.logger.Info("login succeeded", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("sid", session.ID), zap.String("idp", p.cfg.Name))
	return user, session, nil
}

// admitFederated maps who signed in to a realm user: a realm user with
// that verified email, else (allow_*) the person as `<name>:<sub>`.
func (ta *TokenAuth) admitFederated(ctx context.Context, p *IdentityProvider, ident *federatedIdentity) (*User, error) {
	if ident.Subject == "" {
		return nil, idpRefused("no subject")
	}
	if ident.Email == "" || !ident.EmailVerified {
		return nil, idpRefused("email not verified")
	}
	if u := ta.users.users().find(ident.Email, true); u != nil && strings.EqualFold(u.Email, ident.Email) {
		return u, nil
	}
	if !p.admits(ident.Email) {
		return nil, idpRefused("not admitted: no realm user with that email and not in allow_domain/allow_email")
	}
	u := &User{ID: p.Name + ":" + ident.Subject, Email: ident.Email, Name: ident.Name, Roles: p.Roles}
	profile, _ := json.Marshal(u)
	if err := ta.realm.store.PutRecord(ctx, idpUserKind, u.ID, idpProfileID, profile); err != nil {
		return nil, err
	}
	return u, nil
}

// rememberIdPSession records our session under the provider's sid and
// sub, for back-channel logout (on any instance).
func (ta *TokenAuth) rememberIdPSession(ctx context.Context, name string, ident *federatedIdentity, sid string) error {
	if ident.SID != "" {
		if err := ta.realm.store.PutRecord(ctx, idpSIDKind, name+":"+ident.SID, sid, nil); err != nil {
			return err
		}
	}
	return ta.realm.store.PutRecord(ctx, idpSubjectKind, name+":"+ident.Subject, sid, nil)
}

// federatedUser returns a person admitted by allow_* of a provider this
// handler still has, or nil.
func (ta *TokenAuth) federatedUser(ctx context.Context, id string) (*User, error) {
	name, _, ok := strings.Cut(id, ":")
	if !ok || ta.idps[name] == nil {
		return nil, nil
	}
	records, err := ta.realm.store.Records(ctx, idpUserKind, id)
	if err != nil {
		return nil, err
	}
	profile, found := records[idpProfileID]
	if !found {
		return nil, nil
	}
	var u User
	if err := json.Unmarshal(profile, &u); err != nil {
		return nil, fmt.Errorf("federated user %q: %w", id, err)
	}
	u.Roles = ta.idps[name].cfg.Roles // the configuration's, as it is now
	return &u, nil
}

// userByID is the realm user of that id, or the federated person.
func (ta *TokenAuth) userByID(ctx context.Context, id string) (*User, error) {
	if u := ta.users.byID(id); u != nil {
		return u, nil
	}
	return ta.federatedUser(ctx, id)
}

// idpFailure ends a refused or failed sign-in: back to the login page
// with error=idp_failed (mode=fragment: `#error=`), logged with the reason.
func (ta *TokenAuth) idpFailure(w http.ResponseWriter, r *http.Request, flow *idpFlow, err error) error {
	code := idpLoginFailure
	switch {
	case errors.Is(err, errIdPRefused):
		ta.countLogin("failure")
		ta.logIdPRefusal(r, flow.Provider, "", strings.TrimPrefix(err.Error(), errIdPRefused.Error()+": "))
	case errors.Is(err, ErrStoreUnavailable):
		ta.countLogin("error")
		code = "unavailable"
		ta.logger.Error("identity provider sign-in failed", zap.String("idp", flow.Provider), zap.Error(err))
	default:
		// the provider failed, timed out or sent something invalid
		ta.countLogin("failure")
		ta.logIdPRefusal(r, flow.Provider, "", err.Error())
	}
	if flow.Fragment {
		path, _, _ := strings.Cut(flow.Redirect, "#")
		return redirectTo(w, path+"#"+url.Values{"error": {code}}.Encode(), http.StatusSeeOther)
	}
	return redirectTo(w, ta.loginPageURL(flow.Redirect, code, ""), http.StatusSeeOther)
}

// logIdPRefusal logs a refused sign-in in the shape of a failed password
// login, so the fail2ban filter counts it.
func (ta *TokenAuth) logIdPRefusal(r *http.Request, name, user, reason string) {
	ta.logger.Info("login failed", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user), zap.String("idp", name), zap.String("reason", reason))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// idpPage is the small page shown when a sign-in cannot go on.
const idpPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>%s</title>` +
	`<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}</style></head>` +
	`<body><h1>%s</h1><p>%s</p><p><a href="%s">Back to sign in</a></p></body></html>`

func writeIdPPage(w http.ResponseWriter, status int, title, message, back string) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", builtinLoginCSP)
	w.WriteHeader(status)
	esc := html.EscapeString
	_, err := fmt.Fprintf(w, idpPage, esc(title), esc(title), esc(message), esc(back))
	return err
}

// signInClaims are set from the session (withSignInClaims), so a user
// may not have them as custom claims. (amr is a claim of its own.)
var signInClaims = map[string]bool{"idp": true, "sso_portal": true}

// withSignInClaims adds the identity provider that signed the session in
// to the user's claims as `idp` (placeholder {http.auth.user.idp}).
func withSignInClaims(u *User, s Session) *User {
	if s.IdP == "" {
		return u
	}
	c := *u
	c.Claims = make(map[string]any, len(u.Claims)+1)
	for k, v := range u.Claims {
		c.Claims[k] = v
	}
	c.Claims["idp"] = s.IdP
	return &c
}

// loginPageProviders lists the login page's provider buttons, and whether
// the password form is shown: unless the realm has no password users but
// has providers.
func (ta *TokenAuth) loginPageProviders(redirect string) ([]LoginPageProvider, bool) {
	var list []LoginPageProvider
	for i := range ta.IdentityProviders {
		p := &ta.IdentityProviders[i]
		link := ta.Endpoint + "/idp/" + p.Name
		if redirect != "/" && redirect != "" {
			link += "?" + url.Values{"redirect": {redirect}}.Encode()
		}
		list = append(list, LoginPageProvider{Name: p.Name, Label: p.label(), URL: link})
	}
	passwords := ta.users != nil && len(ta.users.users().byID) > 0
	return list, passwords || len(list) == 0
}
