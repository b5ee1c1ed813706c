package tokenauth

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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
	ta.countGuard("accepted")
	setIdentityPlaceholders(r, claims)
	return next.ServeHTTP(w, r)
}

// refuse answers 401 with a Bearer challenge (RFC 6750).
func (ta *TokenAuth) refuse(w http.ResponseWriter, bearerError string) error {
	if done, err := ta.hot.refusePrepared(w, bearerError); done {
		return err
	}
	w.Header().Set("WWW-Authenticate", bearerChallenge(ta.Realm, bearerError))
	return writeError(w, errNotAuthenticated())
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

// setIdentityPlaceholders exposes the token's identity to later handlers.
func setIdentityPlaceholders(r *http.Request, c *accessClaims) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for _, p := range c.identityPlaceholders() {
		repl.Set(p.name, p.value)
	}
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
