package tokenauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The guard, end to end: where a request's access token comes from (the
// Authorization header or the access cookie), the decision (signature and
// claims through tokens.go, revocation, roles), the refusal (401 with a
// Bearer challenge, prepared once per handler, or a browser redirect to the
// login page or to {endpoint}/refresh), and the `{http.auth.user.*}`
// placeholders of an accepted request.

// guard lets a request through only with an accepted access token, and
// hands the identity on as placeholders.
func (ta *TokenAuth) guard(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	raw, fromCookie, viaDPoP := ta.presentedAccessToken(r) // dpop.go
	if fromCookie && !csrfAllowed(r) {
		ta.countGuard("cross_origin")
		return writeError(w, errCrossOrigin())
	}
	if raw == "" {
		ta.countGuard("no_token")
		if ta.dpop.required() {
			return ta.refuseDPoP(w, "")
		}
		return ta.deny(w, r, "", nil)
	}
	claims, err := ta.tokens.verifyAccessCached(raw)
	if err != nil || ta.realm.revoked.has(claims.SID) {
		ta.countGuard("invalid_token")
		if viaDPoP || ta.dpop.required() {
			return ta.refuseDPoP(w, "invalid_token")
		}
		return ta.deny(w, r, "invalid_token", err)
	}
	// bearer tokens pay for DPoP only this test (dpop.go)
	if claims.CNF != nil || viaDPoP || ta.dpop.required() {
		dpopError, err := ta.tokenBinding(r, raw, claims, viaDPoP)
		if err != nil {
			return ta.answerError(w, r, err)
		}
		if dpopError != "" {
			ta.countGuard(dpopError)
			return ta.refuseDPoP(w, dpopError)
		}
	}
	if len(ta.RequireRoles) > 0 && !hasAnyRole(claims.Roles, ta.RequireRoles) {
		ta.countGuard("forbidden")
		return writeError(w, newAPIError(http.StatusForbidden, "Missing a required role"))
	}
	if ta.RequireMFA && !hasTwoFactors(claims.AMR) {
		ta.countGuard("mfa_required")
		return ta.refuseOneFactor(w, r) // mfa.go
	}
	ta.countGuard("accepted")
	setIdentityPlaceholders(r, claims)
	return next.ServeHTTP(newPrivateAnswer(w), r) // privatecache.go
}

// accessToken returns the request's access token: the Authorization
// header's (Bearer, JWT or bare), else (cookies on) the access cookie's;
// fromCookie tells which.
func (ta *TokenAuth) accessToken(r *http.Request) (raw string, fromCookie bool) {
	if raw := tokenFromAuthorization(r.Header.Get("Authorization")); raw != "" {
		return raw, false
	}
	if ta.cookiesEnabled() {
		if v := cookieValue(r, accessCookieName); v != "" {
			return v, true
		}
	}
	return "", false
}

func tokenFromAuthorization(h string) string {
	h = strings.TrimSpace(h)
	scheme, rest, found := strings.Cut(h, " ")
	if !found {
		return h // a bare token
	}
	if strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "JWT") {
		return strings.TrimSpace(rest)
	}
	return ""
}

func hasAnyRole(have, want []string) bool {
	for _, w := range want {
		for _, h := range have {
			if w == h {
				return true
			}
		}
	}
	return false
}

// deny refuses a guarded request without an accepted token. A browser
// navigation is redirected (302): to {endpoint}/refresh when its access
// cookie holds a token that merely expired, else to the login page, in
// both cases with `redirect` set to where it was going. Anything else
// gets 401 with a Bearer challenge.
func (ta *TokenAuth) deny(w http.ResponseWriter, r *http.Request, bearerError string, verifyErr error) error {
	if !ta.cookiesEnabled() || !isNavigation(r) {
		return ta.refuse(w, bearerError)
	}
	target := sanitizeRedirect(originalRequestURI(r))
	location := ta.loginPageURL(target, "", "")
	if cookieValue(r, accessCookieName) != "" && errors.Is(verifyErr, jwt.ErrTokenExpired) {
		location = ta.Endpoint + "/refresh?" + url.Values{"redirect": {target}}.Encode()
	} else if portal := ta.ssoSignInURL(w, r, target); portal != "" {
		location = portal // sso.go: a site signs in at the portal
	}
	return redirectTo(w, location, http.StatusFound)
}

// isNavigation says whether a request is a browser loading a page: GET or
// HEAD accepting text/html, without an Authorization header.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("Authorization") != "" {
		return false
	}
	return acceptsHTML(r)
}

// acceptsHTML says whether the client asked for HTML (browsers do; curl,
// fetch and API clients do not unless told to).
func acceptsHTML(r *http.Request) bool {
	return strings.Contains(strings.ToLower(r.Header.Get("Accept")), "text/html")
}

// originalRequestURI is the path and query the client asked for, before
// any rewrite.
func originalRequestURI(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.RequestURI()
	}
	return r.URL.RequestURI()
}

// refuse answers 401 with a Bearer challenge (RFC 6750).
func (ta *TokenAuth) refuse(w http.ResponseWriter, bearerError string) error {
	if done, err := ta.hot.refusePrepared(w, bearerError); done {
		return err
	}
	w.Header().Set("WWW-Authenticate", bearerChallenge(ta.Realm, bearerError))
	return writeError(w, errNotAuthenticated())
}

// bearerChallenge is the WWW-Authenticate value of a 401 (RFC 6750).
func bearerChallenge(realm, bearerError string) string {
	challenge := fmt.Sprintf("Bearer realm=%q", realm)
	if bearerError != "" {
		challenge += fmt.Sprintf(", error=%q", bearerError)
	}
	return challenge
}

// preparedGuard is what the guard needs on every request, prepared once at
// Provision rather than per request: the guard-decision counters already
// bound to this handler's realm (a CounterVec label lookup hashes both
// labels and takes a lock on every call), and the 401 answer (challenge
// header and JSON body), which depends only on the realm.
//
// A handler that was not provisioned (some unit tests build one by hand)
// has a zero preparedGuard and falls back to the per-request forms, which give
// the same answers.
type preparedGuard struct {
	guard [len(guardResultIndex)]prometheus.Counter
	// challenge and challengeInvalid are the WWW-Authenticate values
	// without and with error="invalid_token".
	challenge, challengeInvalid string
	// notAuthenticated is errNotAuthenticated() as JSON.
	notAuthenticated []byte
}

// guardResultIndex numbers guardResults for preparedGuard.guard.
var guardResultIndex = [...]string{"accepted", "no_token", "invalid_token", "forbidden", "cross_origin", "mfa_required"}

func newPreparedGuard(realm string) (preparedGuard, error) {
	var h preparedGuard
	for i, result := range guardResultIndex {
		h.guard[i] = tokenAuthMetrics.guard.WithLabelValues(realm, result)
	}
	h.challenge = bearerChallenge(realm, "")
	h.challengeInvalid = bearerChallenge(realm, "invalid_token")
	body, err := json.Marshal(errNotAuthenticated())
	if err != nil {
		return preparedGuard{}, err
	}
	h.notAuthenticated = body
	return h, nil
}

// refusePrepared writes the prepared 401 for bearerError; it reports false
// when there is no prepared answer for it (not provisioned, or another
// bearer error), and the caller builds the answer itself.
func (h *preparedGuard) refusePrepared(w http.ResponseWriter, bearerError string) (bool, error) {
	var challenge string
	switch bearerError {
	case "":
		challenge = h.challenge
	case "invalid_token":
		challenge = h.challengeInvalid
	}
	if challenge == "" || h.notAuthenticated == nil {
		return false, nil
	}
	// the same headers as refuse and writeJSON set
	hdr := w.Header()
	hdr.Set("WWW-Authenticate", challenge)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, err := w.Write(h.notAuthenticated)
	return true, err
}

// guardCounter is the pre-bound counter of a guard result, or nil.
func (h *preparedGuard) guardCounter(result string) prometheus.Counter {
	for i, r := range guardResultIndex {
		if r == result {
			return h.guard[i]
		}
	}
	return nil
}

func (ta *TokenAuth) countGuard(result string) {
	if c := ta.hot.guardCounter(result); c != nil {
		c.Inc()
		return
	}
	tokenAuthMetrics.guard.WithLabelValues(ta.Realm, result).Inc()
}

// identityPrefix starts the name of every identity placeholder.
const identityPrefix = "http.auth.user."

// identityNames are the identity placeholders of every accepted token,
// after identityPrefix; custom claims add theirs.
var identityNames = [...]string{"id", "sid", "email", "name", "roles", "amr", "auth_time", "cnf_jkt"}

// setIdentityPlaceholders exposes the token's identity to later handlers
// as `{http.auth.user.*}`.
//
// Lazily: the claims' provider (accessClaims.placeholder) is added to the
// request's Replacer and answers when a placeholder is asked for. Setting
// the eight or more values instead filled a fresh map on every request
// (Caddy makes a Replacer per request): most of what the guard cost a
// request with a cached token (BENCHMARKS.md). A value Set on a Replacer
// is found before any provider, so to keep which value wins exactly as
// when the guard Set its own (the guard's over an earlier handler's, a
// later handler's over the guard's):
//   - when another guard has added its provider to this request (it
//     marks the request with identityVar), the guard Sets its values over
//     it, as it always did;
//   - otherwise it deletes every `http.auth.user.*` value an earlier
//     handler (caddyauth, say) may have Set, then adds the provider: the
//     earlier identity is replaced as a whole, none of its values mixed
//     with the token's. One DeleteByPrefix (one lock, a walk of the few
//     values Set so far: nearly always none of these) instead of a Delete
//     per name, each taking the Replacer's lock: 0.6 µs of a request
//     through Caddy (BENCHMARKS.md, run 4).
//
// The mark is a request variable rather than a look-up of
// http.auth.user.id, which walks every provider of the Replacer (Caddy's
// own request placeholders among them): a third of what the look-up and
// the deletes together cost (BENCHMARKS.md).
func setIdentityPlaceholders(r *http.Request, c *accessClaims) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	provider := c.placeholders
	if provider == nil || anotherGuardHere(r, repl) {
		for _, p := range buildIdentityPlaceholders(c) {
			repl.Set(p.name, p.value)
		}
		return
	}
	repl.DeleteByPrefix(identityPrefix)
	repl.Map(provider)
	caddyhttp.SetVar(r.Context(), identityVar, true)
}

// identityVar marks a request whose Replacer has a guard's identity
// provider (setIdentityPlaceholders).
const identityVar = "token_auth.identity_provider"

// anotherGuardHere says whether another guard has added its provider to
// the request's Replacer. A request without Caddy's request variables (a
// handler called outside Caddy's server) is asked its Replacer instead.
func anotherGuardHere(r *http.Request, repl *caddy.Replacer) bool {
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		return vars[identityVar] != nil
	}
	_, known := repl.Get(identityPrefix + "id")
	return known
}

// identityPlaceholderNames are identityNames with identityPrefix.
var identityPlaceholderNames = func() (names [len(identityNames)]string) {
	for i, n := range identityNames {
		names[i] = identityPrefix + n
	}
	return names
}()

// placeholder answers the identity placeholders of an accepted token (a
// caddy.ReplacerFunc): the same values buildIdentityPlaceholders gives.
func (c *accessClaims) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, identityPrefix)
	if !ok {
		return nil, false
	}
	// custom claims were Set after the others, so they won; of the names
	// above only cnf_jkt is not a reserved claim (the rest never reach Extra)
	if v, ok := c.Extra[name]; ok {
		return claimString(v), true
	}
	switch name {
	case "id":
		return c.Subject, true
	case "sid":
		return c.SID, true
	case "email":
		return c.Email, true
	case "name":
		return c.Name, true
	case "roles":
		return strings.Join(c.Roles, ","), true
	case "amr":
		return strings.Join(c.AMR, ","), true
	case "auth_time":
		return authTimeString(c.AuthTime), true
	case "cnf_jkt":
		return c.boundKey(), true // the DPoP key's thumbprint, "" for bearer tokens
	}
	return nil, false
}

// placeholder is one `{http.auth.user.*}` placeholder and its value.
type placeholder struct {
	name  string
	value any
}

// buildIdentityPlaceholders lists the placeholders an accepted token sets,
// in the order they are Set (custom claims last).
func buildIdentityPlaceholders(c *accessClaims) []placeholder {
	vars := make([]placeholder, 0, len(identityNames)+len(c.Extra))
	for _, n := range identityPlaceholderNames {
		v, _ := c.placeholder(n)
		if n == identityPrefix+"cnf_jkt" {
			v = c.boundKey() // the fixed value; a custom cnf_jkt follows and wins
		}
		vars = append(vars, placeholder{n, v})
	}
	for k, v := range c.Extra {
		vars = append(vars, placeholder{identityPrefix + k, claimString(v)})
	}
	return vars
}

// authTimeString is auth_time as a placeholder: Unix seconds, as in the
// token, or "" when the token has none.
func authTimeString(t *jwt.NumericDate) string {
	if t == nil {
		return ""
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// claimString renders a custom claim for a placeholder: lists comma-joined.
func claimString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = claimString(e)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}
