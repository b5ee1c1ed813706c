package tokenauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// OpenID Connect (Core 1.0, Discovery 1.0, Back-Channel Logout 1.0) with
// github.com/coreos/go-oidc for discovery and every token check, and
// golang.org/x/oauth2 for the authorization code flow with PKCE.

// asymmetricAlgs are the ID token algorithms accepted, whatever discovery
// lists: never "none" or an HMAC (whose key would be our client secret, or
// worse, a public key taken for one).
var asymmetricAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// idpClockSkew is the leeway on the provider's clock for iat.
const idpClockSkew = 2 * time.Minute

// logoutTokenMaxAge is how old a logout token (by iat) may be; replays are
// remembered at least this long.
const logoutTokenMaxAge = 10 * time.Minute

// backchannelLogoutEvent is the member a logout token's `events` must have.
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// discoveryRetry bounds the wait between discovery attempts.
const (
	discoveryRetryFirst = time.Second
	discoveryRetryMax   = time.Minute
)

// oidcBackend is an OpenID provider found by discovery.
type oidcBackend struct {
	cfg    *IdentityProvider
	client *http.Client // every request to the provider, with its timeout
	logger *zap.Logger
	ctx    context.Context // carries the client; cancelled by stop
	cancel context.CancelFunc
	ready  atomic.Pointer[oidcProvider]
	wg     sync.WaitGroup
}

// oidcProvider is what discovery gave.
type oidcProvider struct {
	provider *oidc.Provider
	idTokens *oidc.IDTokenVerifier
	logouts  *oidc.IDTokenVerifier
	oauth    oauth2.Config
}

// newOIDCBackend tries discovery once (bounded by the timeout) and, if the
// provider cannot be reached, keeps trying in the background: Caddy starts
// all the same, and the provider's button answers 503 meanwhile.
func newOIDCBackend(p *IdentityProvider, logger *zap.Logger) *oidcBackend {
	b := &oidcBackend{cfg: p, client: &http.Client{Timeout: p.timeout()}, logger: logger}
	b.ctx, b.cancel = context.WithCancel(oidc.ClientContext(context.Background(), b.client))
	if err := b.discover(); err != nil {
		logger.Warn("identity provider discovery failed; retrying in the background",
			zap.String("idp", p.Name), zap.String("issuer", p.Issuer), zap.Error(err))
		b.wg.Add(1)
		go b.retryDiscovery()
	}
	return b
}

func (b *oidcBackend) discover() error {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.timeout())
	defer cancel()
	provider, err := oidc.NewProvider(ctx, b.cfg.Issuer)
	if err != nil {
		return err
	}
	var meta struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = provider.Claims(&meta)
	algs := slices.DeleteFunc(slices.Clone(meta.Algs), func(a string) bool { return !slices.Contains(asymmetricAlgs, a) })
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	scopes := b.cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	b.ready.Store(&oidcProvider{
		provider: provider,
		idTokens: provider.Verifier(&oidc.Config{ClientID: b.cfg.ClientID, SupportedSigningAlgs: algs}),
		// Logout tokens need not carry exp (iat is checked instead).
		logouts: provider.Verifier(&oidc.Config{ClientID: b.cfg.ClientID, SupportedSigningAlgs: algs, SkipExpiryCheck: true}),
		oauth: oauth2.Config{
			ClientID: b.cfg.ClientID, ClientSecret: b.cfg.ClientSecret,
			Endpoint: provider.Endpoint(), Scopes: scopes,
		},
	})
	b.logger.Info("identity provider ready", zap.String("idp", b.cfg.Name), zap.String("issuer", b.cfg.Issuer))
	return nil
}

func (b *oidcBackend) retryDiscovery() {
	defer b.wg.Done()
	wait := discoveryRetryFirst
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(wait):
		}
		err := b.discover()
		if err == nil {
			return
		}
		b.logger.Warn("identity provider discovery failed", zap.String("idp", b.cfg.Name), zap.Error(err), zap.Duration("next_attempt", wait))
		wait = min(2*wait, discoveryRetryMax)
	}
}

func (b *oidcBackend) stop() {
	b.cancel()
	b.wg.Wait()
}

func (b *oidcBackend) authURL(f *idpFlow, state string) (string, error) {
	p := b.ready.Load()
	if p == nil {
		return "", errIdPNotReady
	}
	oc := p.oauth
	oc.RedirectURL = f.RedirectURI
	return oc.AuthCodeURL(state, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)), nil
}

// idTokenClaims are the ID token claims read beyond go-oidc's own checks.
type idTokenClaims struct {
	Email         string   `json:"email"`
	EmailVerified flexBool `json:"email_verified"`
	Name          string   `json:"name"`
	SID           string   `json:"sid"`
	AZP           string   `json:"azp"`
}

// flexBool reads true or "true" (some providers send a string).
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true", `"true"`:
		*f = true
	case "false", `"false"`, "null":
		*f = false
	default:
		return fmt.Errorf("not a boolean: %s", b)
	}
	return nil
}

// identify exchanges the code (with the PKCE verifier) and checks the ID
// token: signature by the provider's keys, iss, aud, exp (go-oidc), then
// nonce, azp, iat and at_hash here; email and its verification come from
// the ID token, else from the UserInfo endpoint (whose sub must match).
func (b *oidcBackend) identify(ctx context.Context, code string, f *idpFlow) (*federatedIdentity, error) {
	p := b.ready.Load()
	if p == nil {
		return nil, errIdPNotReady
	}
	ctx = context.WithValue(oidc.ClientContext(ctx, b.client), oauth2.HTTPClient, b.client)
	oc := p.oauth
	oc.RedirectURL = f.RedirectURI
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, idpRefused("code exchange: " + err.Error())
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, idpRefused("no id_token in the token response")
	}
	idt, err := p.idTokens.Verify(ctx, raw)
	if err != nil {
		return nil, idpRefused("id_token: " + err.Error())
	}
	var claims idTokenClaims
	if err := idt.Claims(&claims); err != nil {
		return nil, idpRefused("id_token claims: " + err.Error())
	}
	if err := b.checkIDToken(idt, &claims, f.Nonce); err != nil {
		return nil, err
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, idpRefused("at_hash: " + err.Error())
		}
	}
	ident := &federatedIdentity{Subject: idt.Subject, Email: claims.Email, EmailVerified: bool(claims.EmailVerified), Name: claims.Name, SID: claims.SID}
	if ident.Email == "" && p.provider.UserInfoEndpoint() != "" {
		if err := b.fillFromUserInfo(ctx, p, tok, ident); err != nil {
			return nil, err
		}
	}
	return ident, nil
}

// checkIDToken checks what go-oidc leaves to the caller.
func (b *oidcBackend) checkIDToken(idt *oidc.IDToken, c *idTokenClaims, nonce string) error {
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return idpRefused("id_token: nonce mismatch")
	}
	// OIDC Core 3.1.3.7: several audiences need azp, and azp must be us.
	if (len(idt.Audience) > 1 && c.AZP == "") || (c.AZP != "" && c.AZP != b.cfg.ClientID) {
		return idpRefused("id_token: authorized party is not this client")
	}
	now := time.Now()
	switch {
	case idt.IssuedAt.IsZero():
		return idpRefused("id_token: no iat")
	case idt.IssuedAt.After(now.Add(idpClockSkew)):
		return idpRefused("id_token: issued in the future")
	case idt.IssuedAt.Before(now.Add(-idpFlowTTL - idpClockSkew)):
		// older than any sign-in that could carry our nonce
		return idpRefused("id_token: issued too long ago")
	}
	return nil
}

// fillFromUserInfo reads email and name from the UserInfo endpoint, for
// providers that keep them out of the ID token.
func (b *oidcBackend) fillFromUserInfo(ctx context.Context, p *oidcProvider, tok *oauth2.Token, ident *federatedIdentity) error {
	info, err := p.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return idpRefused("userinfo: " + err.Error())
	}
	if info.Subject != ident.Subject { // OIDC Core 5.3.2
		return idpRefused("userinfo: sub does not match the id_token")
	}
	var extra struct {
		Name string `json:"name"`
	}
	_ = info.Claims(&extra)
	ident.Email, ident.EmailVerified = info.Email, info.EmailVerified
	if ident.Name == "" {
		ident.Name = extra.Name
	}
	return nil
}

// logoutClaims is a validated logout token.
type logoutClaims struct {
	Subject string
	SID     string
	JTI     string
}

// verifyLogout validates a logout token as Back-Channel Logout 1.0 §2.6
// says: signature by the provider's keys, iss and aud (go-oidc), then
// iat, exp if present, the events claim, sid or sub, no nonce, a jti.
func (b *oidcBackend) verifyLogout(ctx context.Context, raw string) (*logoutClaims, error) {
	p := b.ready.Load()
	if p == nil {
		return nil, errIdPNotReady
	}
	tok, err := p.logouts.Verify(oidc.ClientContext(ctx, b.client), raw)
	if err != nil {
		return nil, fmt.Errorf("logout_token: %w", err)
	}
	var c struct {
		Events map[string]json.RawMessage `json:"events"`
		Nonce  json.RawMessage            `json:"nonce"`
		SID    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
	}
	if err := tok.Claims(&c); err != nil {
		return nil, fmt.Errorf("logout_token claims: %w", err)
	}
	now := time.Now()
	event, ok := c.Events[backchannelLogoutEvent]
	switch {
	case !ok || len(event) == 0 || event[0] != '{':
		return nil, fmt.Errorf("logout_token: no back-channel logout event")
	case c.Nonce != nil:
		return nil, fmt.Errorf("logout_token: must not carry a nonce")
	case c.SID == "" && tok.Subject == "":
		return nil, fmt.Errorf("logout_token: neither sid nor sub")
	case c.JTI == "":
		return nil, fmt.Errorf("logout_token: no jti")
	case tok.IssuedAt.IsZero() || tok.IssuedAt.After(now.Add(idpClockSkew)) || tok.IssuedAt.Before(now.Add(-logoutTokenMaxAge)):
		return nil, fmt.Errorf("logout_token: iat missing or out of range")
	case !tok.Expiry.IsZero() && tok.Expiry.Before(now):
		return nil, fmt.Errorf("logout_token: expired")
	}
	return &logoutClaims{Subject: tok.Subject, SID: c.SID, JTI: c.JTI}, nil
}
