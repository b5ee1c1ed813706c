package tokenauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

// Single sign-on within a realm, across sites on different domains
// (docs/sso.md). Cookies cannot span registrable domains, so one site of
// the realm, the portal, signs people in, and the other sites receive the
// sign-in as a one-time code:
//
//	site:   GET /page, no valid cookie   → 302 <portal>{endpoint}/sso?return_to=<site>/page&state=S
//	portal: GET {endpoint}/sso           → (its login page, second factor, ...) → 303 <site>{endpoint}/sso/callback?code=C&state=S
//	site:   GET {endpoint}/sso/callback  → redeems C (single use, 60 s, for this origin), opens a
//	                                       session linked to the portal's, sets cookies, 303 /page
//
// S binds the round trip to the browser that started it (login CSRF): it
// is a nonce with its HMAC under a random value the site keeps in a
// host-only cookie, so an attacker cannot make a victim's browser redeem
// the attacker's own code. The code's record holds S too, so neither can
// be swapped for another.
//
// A site session keeps its portal session's id as SignIn.Parent. Revoking
// any session of such a family (logout at any site, the admin API, reuse
// detection) revokes the whole family (revokeFamily), through the realm's
// one revocation path, so every instance refuses them within seconds.

// SSOConfig makes one site of the realm its sign-in portal and lets the
// others receive sign-ins from it. Every token_auth of the realm must have
// the same block (and the same endpoint).
type SSOConfig struct {
	// Portal is the origin (scheme://host[:port], no path) of the site
	// whose login page signs people in for the realm, e.g.
	// `https://login.example.com`.
	Portal string `json:"portal,omitempty"`

	// Sites are the origins of every other site of the realm that may
	// receive a sign-in from the portal, e.g. `https://shop.example.com`.
	// A browser is only ever sent back to one of these.
	Sites []string `json:"sites,omitempty"`
}

// Keys, lifetimes and names of the single sign-on flow.
const (
	ssoCodePrefix = "sso:code:" // + the code's hash: one sign-in handed to one site
	ssoCodeTTL    = 60 * time.Second
	// ssoBindingCookie holds the site's per-browser secret the state is
	// bound to; it is reused by every tab, so parallel sign-ins work.
	ssoBindingCookie = "sso_binding"
	ssoBindingTTL    = 10 * time.Minute
	// ssoReturnLimit bounds return_to (it travels inside a redirect).
	ssoReturnLimit = maxRedirectLen
)

// ssoResults are the outcomes counted in caddy_token_auth_sso_codes_total.
var ssoResults = []string{"issued", "redeemed", "invalid_code", "expired_code", "wrong_site", "bad_state", "session_ended", "error"}

// parseOrigin checks an origin (scheme://host[:port], nothing else) and
// returns it as browsers serialise it: lowercase, without a default port.
func parseOrigin(raw string) (string, error) {
	bad := fmt.Errorf("%q is not an origin: want scheme://host[:port] (http or https; no path, user, query or trailing slash)", raw)
	if !plainURLChars(raw) {
		return "", bad
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil ||
		u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(raw, "?#") {
		return "", bad
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if host == "" || strings.HasSuffix(u.Host, ":") {
		return "", bad
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", bad
		}
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	hostport := host
	if port != "" || strings.Contains(host, ":") {
		hostport = net.JoinHostPort(host, port)
		hostport = strings.TrimSuffix(hostport, ":") // an IPv6 literal without a port
	}
	return u.Scheme + "://" + hostport, nil
}

// validate checks every origin and normalises them in place.
func (c *SSOConfig) validate() error {
	if c == nil {
		return nil
	}
	if c.Portal == "" {
		return errors.New("sso: portal is required: portal https://login.example.com")
	}
	if len(c.Sites) == 0 {
		return errors.New("sso: sites is required: the origins of the other sites of the realm")
	}
	portal, err := parseOrigin(c.Portal)
	if err != nil {
		return fmt.Errorf("sso: portal %w", err)
	}
	c.Portal = portal
	seen := map[string]bool{portal: true}
	for i, s := range c.Sites {
		site, err := parseOrigin(s)
		if err != nil {
			return fmt.Errorf("sso: site %w", err)
		}
		if seen[site] {
			return fmt.Errorf("sso: %s is listed twice (the portal is not one of sites)", site)
		}
		seen[site] = true
		c.Sites[i] = site
	}
	return nil
}

// realmKey is what every directive of the realm must agree on: the
// portal, the sites (as a set) and the endpoint the URLs are built with.
func (c *SSOConfig) realmKey(endpoint string) string {
	if c == nil {
		return ""
	}
	norm := *c
	norm.Sites = slices.Clone(c.Sites)
	if err := norm.validate(); err != nil {
		norm = *c // reported by validate on its own
	}
	slices.Sort(norm.Sites)
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	return fmt.Sprintf("portal %s sites %s endpoint %s", norm.Portal, strings.Join(norm.Sites, " "), strings.TrimSuffix(endpoint, "/"))
}

// parseSSO: sso { portal <origin>; sites <origin...> }
func parseSSO(ta *TokenAuth, d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	cfg := &SSOConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch option := d.Val(); option {
		case "portal":
			if err := oneArg(d, &cfg.Portal); err != nil {
				return err
			}
		case "sites":
			sites := d.RemainingArgs()
			if len(sites) == 0 {
				return d.ArgErr()
			}
			cfg.Sites = append(cfg.Sites, sites...)
		default:
			return d.Errf("unknown sso option %q", option)
		}
	}
	if err := cfg.validate(); err != nil {
		return d.Err(err.Error())
	}
	ta.SSO = cfg
	return nil
}

// provisionSSO validates the block and tells the realm that its sessions
// may come in families.
func (ta *TokenAuth) provisionSSO() error {
	if ta.SSO == nil {
		return nil
	}
	if err := ta.SSO.validate(); err != nil {
		return err
	}
	if !ta.cookiesEnabled() {
		return errors.New("sso needs cookies on: the portal signs browsers in")
	}
	ta.realm.families.Store(true)
	ta.warnSharedAudience()
	return nil
}

// warnSharedAudience says, when the operator left `audience` at its
// default (the realm), that an API token from one site of the realm is
// accepted at every other: sso links browser sessions, and API clients
// stay per site only when each site names its own audience.
func (ta *TokenAuth) warnSharedAudience() {
	if ta.Audience != ta.Realm {
		return
	}
	ta.logger.Warn("sso: every site of the realm shares one audience, so an API token from one site's endpoint is accepted at every other site's guard; give each site its own `audience` to keep API tokens per site (docs/sso.md)",
		zap.String("realm", ta.Realm), zap.String("audience", ta.Audience))
}

// ssoRole says what this request's origin is to single sign-on.
type ssoRole int

const (
	ssoNone   ssoRole = iota // no sso, or an origin not in the block
	ssoPortal                // the portal
	ssoSite                  // one of sites
)

// ssoRoleOf is the part the request's origin plays, and that origin.
func (ta *TokenAuth) ssoRoleOf(r *http.Request) (ssoRole, string) {
	if ta.SSO == nil || !ta.cookiesEnabled() {
		return ssoNone, ""
	}
	origin, err := parseOrigin(requestOriginURL(r)) // passkeys.go
	switch {
	case err != nil:
		return ssoNone, ""
	case origin == ta.SSO.Portal:
		return ssoPortal, origin
	case slices.Contains(ta.SSO.Sites, origin):
		return ssoSite, origin
	}
	return ssoNone, origin
}

// ssoSignInURL is where a site sends a browser that must sign in: the
// portal, with the page to come back to and a state bound to this
// browser (the binding cookie is set on w). It is "" when the request is
// not for a site of the sso block. redirect is the page's path and query.
func (ta *TokenAuth) ssoSignInURL(w http.ResponseWriter, r *http.Request, redirect string) string {
	role, origin := ta.ssoRoleOf(r)
	if role != ssoSite {
		return ""
	}
	binding := cookieValue(r, ssoBindingCookie)
	if !validNonce(binding) {
		binding = randomID()
	}
	http.SetCookie(w, &http.Cookie{
		Name: ssoBindingCookie, Value: binding, Path: ta.Endpoint + "/sso/",
		MaxAge: int(ssoBindingTTL / time.Second), HttpOnly: true, Secure: secureRequest(r),
		// Lax: the portal's redirect back is a top-level GET navigation.
		SameSite: http.SameSiteLaxMode,
	})
	q := url.Values{"return_to": {origin + sanitizeRedirect(redirect)}, "state": {ssoState(binding, randomID())}}
	if ta.RequireMFA {
		// the portal asks for the second factor before handing the sign-in over
		q.Set("mfa", "1")
	}
	return ta.SSO.Portal + ta.Endpoint + "/sso?" + q.Encode()
}

// ssoState is nonce "." HMAC(binding, nonce): only the browser holding the
// binding cookie can present it at the callback.
func ssoState(binding, nonce string) string {
	return nonce + "." + ssoStateMAC(binding, nonce)
}

func ssoStateMAC(binding, nonce string) string {
	mac := hmac.New(sha256.New, []byte(binding))
	mac.Write([]byte("token_auth sso state\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// stateOfThisBrowser says whether state was made with this browser's
// binding cookie.
func stateOfThisBrowser(r *http.Request, state string) bool {
	nonce, mac, ok := strings.Cut(state, ".")
	binding := cookieValue(r, ssoBindingCookie)
	if !ok || !validNonce(nonce) || !validNonce(binding) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(mac), []byte(ssoStateMAC(binding, nonce))) == 1
}

// validNonce says whether s looks like randomID's output (or a hash of
// the same shape): base64url, 22 to 64 characters.
func validNonce(s string) bool {
	if len(s) < 22 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ssoReturnTarget checks return_to: an absolute http(s) URL on one of
// sites, with the rules sanitizeRedirect applies to paths (no control
// characters, spaces, backslashes or non-ASCII; no userinfo). It returns
// the site's origin and the path and query to go back to.
func (c *SSOConfig) ssoReturnTarget(raw string) (origin, path string, ok bool) {
	if raw == "" || len(raw) > ssoReturnLimit || !plainURLChars(raw) {
		return "", "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", "", false
	}
	origin, err = parseOrigin(u.Scheme + "://" + u.Host)
	if err != nil || !slices.Contains(c.Sites, origin) {
		return "", "", false
	}
	path = sanitizeRedirect(u.RequestURI())
	return origin, path, true
}

// ssoCode is what the store keeps of one code: which sign-in it hands
// over, to which site, for which round trip.
type ssoCode struct {
	Site    string    `json:"site"`  // the origin allowed to redeem it
	Path    string    `json:"path"`  // where the site sends the browser
	State   string    `json:"state"` // the round trip it belongs to
	SID     string    `json:"sid"`   // the portal session
	Expires time.Time `json:"expires"`
}

// ssoCodeKey is the store key of a code: its hash, so the store never
// holds a usable code.
func ssoCodeKey(code string) string {
	sum := sha256.Sum256([]byte(code))
	return ssoCodePrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// serveSSOEndpoint answers {endpoint}/sso (at the portal) and
// {endpoint}/sso/callback (at a site), and sends a site's login page to
// the portal. handled is false for every other request.
func (ta *TokenAuth) serveSSOEndpoint(w http.ResponseWriter, r *http.Request, sub string) (handled bool, err error) {
	if ta.SSO == nil || !ta.cookiesEnabled() || (sub != "" && sub != "/sso" && sub != "/sso/callback") {
		return false, nil
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case sub == "" && read:
		// a site's sign-in is the portal's, with every method it offers
		if location := ta.ssoSignInURL(w, r, r.URL.Query().Get("redirect")); location != "" {
			return true, redirectTo(w, location, http.StatusFound)
		}
		return false, nil
	case sub == "":
		return false, nil
	case !read:
		w.Header().Set("Allow", "GET, HEAD")
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	case sub == "/sso":
		return true, ta.startSSO(w, r)
	default:
		return true, ta.finishSSO(w, r)
	}
}

// startSSO answers GET {endpoint}/sso?return_to=<url>&state=<s> at the
// portal: signs the person in if needed (the login page, then back here),
// then 303 to the site's callback with a fresh code.
func (ta *TokenAuth) startSSO(w http.ResponseWriter, r *http.Request) error {
	if role, _ := ta.ssoRoleOf(r); role != ssoPortal {
		return writeIdPPage(w, http.StatusNotFound, "Not the sign-in portal",
			"Sign-in for this realm happens at "+ta.SSO.Portal+".", ta.SSO.Portal+ta.Endpoint)
	}
	q := r.URL.Query()
	site, path, ok := ta.SSO.ssoReturnTarget(q.Get("return_to"))
	if !ok {
		ta.logger.Info("sso: return_to is not on sites; going to /", zap.String("realm", ta.Realm),
			zap.String("return_to", truncate(q.Get("return_to"), 256)), zap.String("client_ip", clientIP(r)))
		return redirectTo(w, "/", http.StatusSeeOther)
	}
	state := q.Get("state")
	if nonce, mac, ok := strings.Cut(state, "."); !ok || !validNonce(nonce) || !validNonce(mac) {
		ta.countSSO("bad_state")
		ta.logSSORefusal(r, "bad_state", site)
		return ta.ssoRefused(w, site+path)
	}
	claims, _, ok, err := ta.cookieUser(w, r) // mfapage.go: else to the login page, and back
	if !ok {
		return err
	}
	if (ta.RequireMFA || q.Get("mfa") == "1") && ta.stepUpOffered() && !hasTwoFactors(claims.AMR) {
		return redirectTo(w, ta.pageURL("/mfa/step-up", originalRequestURI(r), ""), http.StatusFound)
	}
	code := randomID() + randomID()
	record, _ := json.Marshal(ssoCode{Site: site, Path: path, State: state, SID: claims.SID, Expires: ta.now().Add(ssoCodeTTL)})
	if err := ta.realm.store.PutTemp(r.Context(), ssoCodeKey(code), record, ssoCodeTTL); err != nil {
		ta.countSSO("error")
		return ta.answerError(w, r, err)
	}
	ta.countSSO("issued")
	ta.logger.Info("sso code issued", zap.String("realm", ta.Realm), zap.String("user", claims.Subject),
		zap.String("sid", claims.SID), zap.String("site", site), zap.String("client_ip", clientIP(r)))
	return redirectTo(w, site+ta.Endpoint+"/sso/callback?"+url.Values{"code": {code}, "state": {state}}.Encode(), http.StatusSeeOther)
}

// stepUpOffered says whether this handler's step-up page can add a
// second factor (otherwise the site asks for it itself).
func (ta *TokenAuth) stepUpOffered() bool {
	return ta.totp != nil || ta.passkeysOn()
}

// finishSSO answers GET {endpoint}/sso/callback?code=&state= at a site:
// redeems the code and opens the site's own session, linked to the
// portal's. Any refusal is a 400 page, without a session.
func (ta *TokenAuth) finishSSO(w http.ResponseWriter, r *http.Request) error {
	role, origin := ta.ssoRoleOf(r)
	if role != ssoSite {
		return ta.ssoCallbackFailed(w, r, origin, "/", "wrong_site", nil)
	}
	q := r.URL.Query()
	code, reason, err := ta.takeSSOCode(r, origin, q.Get("code"), q.Get("state"))
	if reason != "" || err != nil {
		return ta.ssoCallbackFailed(w, r, origin, "/", reason, err)
	}
	user, s, reason, err := ta.openLinkedSession(r, code.SID)
	if reason != "" || err != nil {
		return ta.ssoCallbackFailed(w, r, origin, code.Path, reason, err)
	}
	res, err := ta.issuePair(user, s, "sso")
	if err != nil {
		return ta.ssoCallbackFailed(w, r, origin, code.Path, "", err)
	}
	ta.countSSO("redeemed")
	ta.logger.Info("login succeeded", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("sid", s.ID), zap.String("sso_parent", s.Parent), zap.String("site", origin))
	ta.setSessionCookies(w, r, res)
	return redirectTo(w, code.Path, http.StatusSeeOther)
}

// takeSSOCode consumes a code (whatever happens next: a code that was
// shown to the wrong site or browser is dead) and checks it was issued
// for this origin and this browser's round trip. reason is the metric
// result of a refusal, "" when it is good; err is a store failure.
func (ta *TokenAuth) takeSSOCode(r *http.Request, origin, code, state string) (*ssoCode, string, error) {
	if code == "" || len(code) > 128 {
		return nil, "invalid_code", nil
	}
	raw, found, err := ta.realm.store.TakeTemp(r.Context(), ssoCodeKey(code))
	if err != nil {
		return nil, "", err
	}
	var rec ssoCode
	if !found || json.Unmarshal(raw, &rec) != nil {
		return nil, "invalid_code", nil // unknown, used already, or expired in the store
	}
	switch {
	case !ta.now().Before(rec.Expires):
		return nil, "expired_code", nil
	case rec.Site != origin:
		return nil, "wrong_site", nil
	case subtle.ConstantTimeCompare([]byte(rec.State), []byte(state)) != 1, !stateOfThisBrowser(r, state):
		return nil, "bad_state", nil
	}
	return &rec, "", nil
}

// openLinkedSession opens this site's session for the portal session
// parent: the same user, amr and auth_time, linked by SignIn.Parent.
// reason is "session_ended" when the portal session is over.
func (ta *TokenAuth) openLinkedSession(r *http.Request, parent string) (*User, Session, string, error) {
	ctx := r.Context()
	p, live, err := ta.liveSession(ctx, parent)
	if err != nil || !live {
		return nil, Session{}, "session_ended", err
	}
	user, err := ta.userByID(ctx, p.User)
	if err != nil || user == nil {
		return nil, Session{}, "session_ended", err
	}
	s, err := ta.openSessionWith(r, user, SignIn{AMR: slices.Clone(p.AMR), AuthTime: p.AuthTime, Parent: p.ID})
	if err != nil {
		return nil, Session{}, "", err
	}
	// The portal session may have been revoked while this one was being
	// created, after the revocation listed the family: look again, so no
	// site session outlives its portal session.
	if _, live, err = ta.liveSession(ctx, parent); err != nil || !live {
		if _, rerr := ta.realm.revoke(ctx, revocation{sid: s.ID}); rerr != nil && err == nil {
			err = rerr
		}
		return nil, Session{}, "session_ended", err
	}
	return user, s, "", nil
}

// liveSession reads a session and says whether it is neither revoked nor
// past its lifetimes.
func (ta *TokenAuth) liveSession(ctx context.Context, sid string) (Session, bool, error) {
	s, err := ta.realm.store.Get(ctx, sid)
	if errors.Is(err, ErrSessionNotFound) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, err
	}
	return s, !s.Revoked && !sessionExpired(s, ta.now()) && !ta.realm.revoked.has(sid), nil
}

// ssoCallbackFailed ends a callback that opened no session: a store or
// server fault (err) is answered as such, a refusal (reason) with the
// page, logged and counted.
func (ta *TokenAuth) ssoCallbackFailed(w http.ResponseWriter, r *http.Request, origin, back, reason string, err error) error {
	if err != nil {
		ta.countSSO("error")
		return ta.answerError(w, r, err)
	}
	ta.countSSO(reason)
	ta.logSSORefusal(r, reason, origin)
	return ta.ssoRefused(w, back)
}

// ssoRefused is the page of a sign-in that cannot be completed.
func (ta *TokenAuth) ssoRefused(w http.ResponseWriter, back string) error {
	return writeIdPPage(w, http.StatusBadRequest, "Sign-in could not be completed",
		"This sign-in link is not valid (it was used already, has expired, was meant for another site, or was started in another browser). Please open the page again to sign in.",
		back)
}

func (ta *TokenAuth) logSSORefusal(r *http.Request, reason, site string) {
	ta.logger.Warn("sso code refused", zap.String("realm", ta.Realm), zap.String("reason", reason),
		zap.String("site", site), zap.String("client_ip", clientIP(r)))
}

func (ta *TokenAuth) countSSO(result string) {
	tokenAuthMetrics.sso.WithLabelValues(ta.Realm, result).Inc()
}

// withSSOClaims adds the portal's origin to the claims of a site session
// that came through single sign-on, as `sso_portal` (placeholder
// {http.auth.user.sso_portal}).
func (ta *TokenAuth) withSSOClaims(u *User, s Session) *User {
	if s.Parent == "" || ta.SSO == nil {
		return u
	}
	c := *u
	c.Claims = make(map[string]any, len(u.Claims)+1)
	for k, v := range u.Claims {
		c.Claims[k] = v
	}
	c.Claims["sso_portal"] = ta.SSO.Portal
	return &c
}

// revokeFamily revokes, after sid, the rest of its single sign-on family:
// the portal session it is linked to (or sid itself, if it is one) and
// every site session linked to that, and returns their ids. Realms
// without sso have no families and pay nothing.
func (rs *realmState) revokeFamily(ctx context.Context, sid string) ([]string, error) {
	if !rs.families.Load() || sid == "" {
		return nil, nil
	}
	s, err := rs.store.Get(ctx, sid)
	if errors.Is(err, ErrSessionNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	root, ids := s.ID, []string(nil)
	if s.Parent != "" {
		// The portal session goes first, before the family is listed: a
		// site session created after the listing then finds it revoked
		// (openLinkedSession) and revokes itself.
		root = s.Parent
		if err := rs.store.Revoke(ctx, root); err != nil {
			return nil, err
		}
		ids = append(ids, root)
	}
	members, err := rs.store.ListUser(ctx, s.User)
	if err != nil {
		return ids, err
	}
	for _, m := range members {
		if m.ID == sid || m.ID == root || m.Revoked || m.Parent != root {
			continue
		}
		if err := rs.store.Revoke(ctx, m.ID); err != nil {
			return ids, err
		}
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// ssoFormAction lets the portal's forms (login, second factor, passkey)
// end at a site: browsers apply a page's CSP form-action to every
// redirect after the form is sent, and a sign-in through the portal ends
// with a redirect to the site's callback.
func (ta *TokenAuth) ssoFormAction(csp string) string {
	if ta.SSO == nil {
		return csp
	}
	return strings.Replace(csp, "form-action 'self'", "form-action 'self' "+strings.Join(ta.SSO.Sites, " "), 1)
}
