// Package tokenauth is a Caddy HTTP handler that logs users in with a
// password, issues short-lived JWT access tokens and rotating refresh
// tokens, and guards routes with them.
package tokenauth

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(TokenAuth{})
	httpcaddyfile.RegisterDirective("token_auth", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("token_auth", httpcaddyfile.Before, "basic_auth")
}

// Defaults of the lifetimes.
const (
	defaultRealm      = "default"
	defaultEndpoint   = "/authentication"
	defaultIssuer     = "caddy-token-auth"
	defaultAccessTTL  = 15 * time.Minute
	defaultSessionTTL = 720 * time.Hour
	defaultIdleTTL    = 168 * time.Hour
	defaultReuseGrace = 10 * time.Second
)

// TokenAuth serves an authentication endpoint (password login, refresh
// token rotation, logout) and guards the requests it handles with the
// access tokens it issues. The identity of an accepted request is available
// to later handlers as `{http.auth.user.*}` placeholders.
type TokenAuth struct {
	// Realm names a set of users, keys and sessions. Handlers naming the
	// same realm share sessions and keys. Default: `default`.
	Realm string `json:"realm,omitempty"`

	// Endpoint is the path of the authentication endpoint, always reachable
	// without a token. Default: `/authentication`.
	Endpoint string `json:"endpoint,omitempty"`

	// SigningKey signs new tokens. Default: an Ed25519 key generated once
	// and kept in Caddy's storage (`token_auth/<realm>/signing_key.pem`), so
	// it survives restarts and is shared by every instance sharing that
	// storage.
	SigningKey *KeyConfig `json:"signing_key,omitempty"`

	// VerifyKeys verify tokens but never sign: keep the previous signing key
	// here while rotating keys, so nobody is logged out.
	VerifyKeys []KeyConfig `json:"verify_keys,omitempty"`

	// Issuer is the `iss` claim, set on every token and checked on every
	// token. Default: `caddy-token-auth`.
	Issuer string `json:"issuer,omitempty"`

	// Audience is the `aud` claim, set and checked. Default: the realm name,
	// so tokens of one realm are never accepted by another.
	Audience string `json:"audience,omitempty"`

	// AccessTTL is how long an access token is valid. Default: 15m.
	AccessTTL caddy.Duration `json:"access_ttl,omitempty"`

	// SessionTTL is the absolute lifetime of a login session: no refresh
	// extends it. Default: 720h (30 days).
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	// IdleTTL ends a session not refreshed for this long. Default: 168h.
	IdleTTL caddy.Duration `json:"idle_ttl,omitempty"`

	// ReuseGrace is how long after a rotation the previous refresh token is
	// still answered (with the current tokens, without a new rotation), so
	// that two tabs refreshing at once are not mistaken for theft. Any
	// older refresh token, or the previous one after this window, revokes
	// the whole session. Default: 10s; 0 disables the grace.
	ReuseGrace *caddy.Duration `json:"reuse_grace,omitempty"`

	// Users who may log in.
	Users []User `json:"users,omitempty"`

	// UsersFile is a file of users, JSON (`{"users":[...]}`) or htpasswd
	// (`id:hash` lines), re-read when it changes on disk. A broken file
	// keeps the last good list.
	UsersFile string `json:"users_file,omitempty"`

	// Store keeps sessions. Default: an embedded bolt database under
	// Caddy's data directory.
	Store *StoreConfig `json:"store,omitempty"`

	// Cookies turns the browser features on or off: the login page at
	// GET {endpoint}, form login, the access_token and refresh_token
	// cookies (HttpOnly, SameSite=Lax, Secure except over plain HTTP),
	// GET {endpoint}/refresh, POST {endpoint}/logout, and redirecting
	// page loads without a valid token to the login page. Turn it off for
	// a pure API: tokens then only come in the Authorization header.
	// Default: on.
	Cookies *bool `json:"cookies,omitempty"`

	// LoginPage is an html/template file that replaces the built-in login
	// page. It gets the fields of LoginPageData (see the README); it is
	// read when the config loads, and a template that does not parse or
	// render stops the config from loading.
	LoginPage string `json:"login_page,omitempty"`

	// RequireRoles lets through only users with at least one of these
	// roles; others get 403.
	RequireRoles []string `json:"require_roles,omitempty"`

	// MFA lets users add a second factor (`mfa totp`): an authenticator
	// app, asked for after the password.
	MFA *MFAConfig `json:"mfa,omitempty"`

	// RequireMFA lets through only tokens of a sign-in with two factors
	// (amr "mfa"). A browser page load with a one-factor session is sent
	// to a step-up page that asks for the missing factor and comes back
	// (to set one up first if the user has none); other requests get 403
	// with data.reason "mfa_required". A password login at this directive
	// of a user with a passkey then asks for the passkey as well (as for an
	// authenticator app, which is always asked for). Needs `mfa totp` or
	// `passkeys`.
	RequireMFA bool `json:"require_mfa,omitempty"`

	// Throttle bans a user id or a client IP (as Caddy determines it,
	// honouring the server's trusted_proxies) after repeated failed logins:
	// 429 with Retry-After, whatever password is sent. Default: 5 failures
	// in 10m ban for 10m.
	Throttle *ThrottleConfig `json:"throttle,omitempty"`

	// MaxConcurrentHashes bounds the password verifications the realm runs
	// at once in this Caddy process (bcrypt and argon2id are deliberately
	// slow), however many token_auth directives name the realm: they share
	// the bound, and must all give the same value. A login that finds no
	// free slot within a short wait gets 503 with Retry-After, so a login
	// flood cannot starve the guarded site. Default: half the number of
	// CPUs, at least 1.
	MaxConcurrentHashes int `json:"max_concurrent_hashes,omitempty"`

	// MaxSessions bounds the live sessions of one user in the realm: a
	// login that would make one more revokes the user's oldest session
	// (signed out at its next page load or refresh, on every instance).
	// It caps what one person, or a leaked password, can make the session
	// store hold. Every directive of a realm must give the same value.
	// Default (0 or left out): 100.
	MaxSessions int `json:"max_sessions,omitempty"`

	// TokenCache is how many verified access tokens the guard remembers,
	// so that a token seen before skips the signature check (its expiry
	// and the session's revocation are still checked on every request).
	// A token is remembered from its second request on, so tokens that
	// never repeat cost nothing extra. Each entry takes about 1 KiB.
	// Default: 10000; 0 disables the cache.
	TokenCache *int `json:"token_cache,omitempty"`

	// IdentityProviders people may sign in with instead of a password
	// (OpenID Connect providers, GitHub); see IdentityProvider and
	// docs/identity-providers.md.
	IdentityProviders []IdentityProvider `json:"identity_providers,omitempty"`

	// Passkeys lets users sign in with passkeys (WebAuthn) and add them on
	// the account page; see PasskeysConfig. Default: off.
	Passkeys *PasskeysConfig `json:"passkeys,omitempty"`

	// SSO makes one site of the realm the sign-in portal of its other
	// sites, on any domains: see SSOConfig and docs/sso.md. Default: none.
	SSO *SSOConfig `json:"sso,omitempty"`

	// DPoP binds sessions and their access tokens to a key pair the client
	// holds (RFC 9449), so that a copied token is useless without the
	// private key: see docs/dpop.md. Default: mode optional (clients that
	// send DPoP proofs get bound tokens, others bearer tokens).
	DPoP *DPoPConfig `json:"dpop,omitempty"`

	realm    *realmState
	storeCfg StoreConfig
	tokens   *tokenService
	users    *userDirectory
	logger   *zap.Logger
	now      func() time.Time

	hot           preparedGuard // prepared at Provision for the guard
	loginTemplate *template.Template
	// the login throttle and the bound on concurrent password hashing
	throttle  ThrottleConfig
	hashSlots hashSlots
	idps      map[string]*idpRuntime // idp.go, by name
	totp      *totpService           // mfa.go, totp.go: nil without `mfa totp`
	dpop      *dpopVerifier          // dpop.go
	// testStorage stands in for ctx.Storage() in tests without a running
	// config (the DPoP nonce key, dpop_nonce.go)
	testStorage certmagic.Storage
	// passkeys.go: WebAuthn configurations by host
	relyingParties *relyingParties
}

// CaddyModule returns the Caddy module information.
func (TokenAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.token_auth",
		New: func() caddy.Module { return new(TokenAuth) },
	}
}

// Provision fills defaults, loads keys and users, and opens (or joins) the
// realm's shared state.
func (ta *TokenAuth) Provision(ctx caddy.Context) error {
	ta.logger = ctx.Logger()
	ta.now = time.Now
	ta.applyDefaults()
	if err := checkRealmName(ta.Realm); err != nil { // realmrules.go
		return err
	}
	var err error
	if ta.hot, err = newPreparedGuard(ta.Realm); err != nil {
		return err
	}
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := registerMetrics(reg, ta.Realm); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}

	keys, err := ta.loadKeys(ctx)
	if err != nil {
		return err
	}
	ta.tokens = newTokenService(keys, ta.Issuer, ta.Audience, time.Duration(ta.AccessTTL))
	ta.tokens.cache = newTokenCache(ta.tokenCacheSize())
	if err := ta.provisionMFA(ctx); err != nil {
		return err
	}

	usersFile, err := resolvePlaceholders("users_file", ta.UsersFile) // keys.go
	if err != nil {
		return err
	}
	ta.users, err = newRealmUserDirectory(ta.Realm, ta.Users, usersFile, ta.logger)
	if err != nil {
		return err
	}

	if ta.LoginPage != "" {
		if ta.loginTemplate, err = loadLoginPage(caddy.NewReplacer().ReplaceKnown(ta.LoginPage, "")); err != nil {
			return err
		}
	}
	ta.throttle = ta.Throttle.resolved()
	if err := ta.throttle.validate(); err != nil {
		return err
	}

	dpopCfg := ta.DPoP.resolved()
	if err := dpopCfg.validate(); err != nil {
		return err
	}

	ta.storeCfg = ta.Store.resolvedOrDefault()
	if err := ta.storeCfg.validate(); err != nil {
		return err
	}
	if err := claimRealm(ctx, ta.Realm, ta.realmConfig()); err != nil { // realmrules.go
		return err
	}
	ta.realm, err = acquireRealm(ctx, ta.Realm, ta.storeCfg, ta.logger)
	if err != nil {
		return fmt.Errorf("opening session store: %w", err)
	}
	ta.hashSlots = acquireHashSlots(ta.Realm, ta.MaxConcurrentHashes) // hashslots_realm.go
	ta.realm.useAccessTTL(time.Duration(ta.AccessTTL))
	if err := ta.provisionSSO(); err != nil { // sso.go
		return err
	}
	ta.dpop = newDPoPVerifier(dpopCfg, ta.realm.store, func() time.Time { return ta.now() })
	if err := ta.provisionNonces(ctx, dpopCfg); err != nil { // dpop_nonce.go
		return err
	}
	ta.relyingParties = new(relyingParties)
	ta.warnPasskeyOnlyUsers()
	ta.warnNoSignIn()   // users.go
	invitations.add(ta) // passkeys_invite.go
	return ta.provisionIdentityProviders()
}

func (ta *TokenAuth) applyDefaults() {
	if ta.Realm == "" {
		ta.Realm = defaultRealm
	}
	if ta.Endpoint == "" {
		ta.Endpoint = defaultEndpoint
	}
	ta.Endpoint = strings.TrimSuffix(ta.Endpoint, "/")
	if ta.Issuer == "" {
		ta.Issuer = defaultIssuer
	}
	if ta.Audience == "" {
		ta.Audience = ta.Realm
	}
	setDefault(&ta.AccessTTL, defaultAccessTTL)
	setDefault(&ta.SessionTTL, defaultSessionTTL)
	setDefault(&ta.IdleTTL, defaultIdleTTL)
	if ta.ReuseGrace == nil {
		grace := caddy.Duration(defaultReuseGrace)
		ta.ReuseGrace = &grace
	}
}

func setDefault(d *caddy.Duration, def time.Duration) {
	if *d == 0 {
		*d = caddy.Duration(def)
	}
}

// Validate checks that the lifetimes fit together.
func (ta *TokenAuth) Validate() error {
	if !strings.HasPrefix(ta.Endpoint, "/") {
		return fmt.Errorf("endpoint must be a path starting with /, got %q", ta.Endpoint)
	}
	for name, d := range map[string]caddy.Duration{
		"access_ttl": ta.AccessTTL, "session_ttl": ta.SessionTTL, "idle_ttl": ta.IdleTTL,
	} {
		if d < 0 {
			return fmt.Errorf("%s must be positive", name)
		}
	}
	if err := ta.validateMaxSessions(); err != nil {
		return err
	}
	if ta.TokenCache != nil && *ta.TokenCache < 0 {
		return fmt.Errorf("token_cache must not be negative")
	}
	if *ta.ReuseGrace < 0 {
		return fmt.Errorf("reuse_grace must not be negative")
	}
	if ta.RequireMFA && (ta.MFA == nil || ta.MFA.TOTP == nil) && !ta.passkeysOn() {
		// the step-up page asks for a TOTP code or a passkey (passkey
		// sessions with user verification satisfy require mfa from their sign-in)
		return fmt.Errorf("require mfa needs a second factor users can add: mfa totp or passkeys")
	}
	if ta.Passkeys != nil {
		if err := ta.Passkeys.validate(); err != nil {
			return err
		}
	}
	if ta.AccessTTL > ta.IdleTTL || ta.AccessTTL > ta.SessionTTL {
		return fmt.Errorf("access_ttl (%s) must not exceed idle_ttl or session_ttl", time.Duration(ta.AccessTTL))
	}
	return nil
}

// Cleanup releases the realm's shared state (the last handler using it
// closes the store) and the handler's hold on cached keys.
func (ta *TokenAuth) Cleanup() error {
	ta.stopIdentityProviders()
	if ta.tokens != nil {
		ta.tokens.keys.release() // keycache.go
	}
	if ta.realm == nil {
		return nil
	}
	invitations.remove(ta)
	releaseHashSlots(ta.Realm, ta.MaxConcurrentHashes)
	return releaseRealm(ta.Realm, ta.storeCfg)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*TokenAuth)(nil)
	_ caddy.Validator             = (*TokenAuth)(nil)
	_ caddy.CleanerUpper          = (*TokenAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*TokenAuth)(nil)
)
