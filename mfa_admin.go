package tokenauth

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// serveMFAReset answers DELETE /token_auth/<realm>/mfa/<user> on Caddy's
// admin API, for a person who lost their authenticator: their TOTP
// enrolment and recovery codes are removed and every session of theirs is
// revoked (a session signed in with the lost phone ends too). It answers
// {"user", "revoked": [<sid>...]} and is logged as a warning.
func (a *adminAPI) serveMFAReset(w http.ResponseWriter, r *http.Request, escapedRealm, escapedUser string) error {
	if r.Method != http.MethodDelete {
		w.Header().Set("Allow", "DELETE")
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	realmName, err := url.PathUnescape(escapedRealm)
	if err != nil || realmName == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid realm name")}
	}
	user, err := url.PathUnescape(escapedUser)
	if err != nil || user == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid user id")}
	}
	rs := lookupRealm(realmName)
	if rs == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no realm %q is configured", realmName)}
	}
	ctx := r.Context()
	if err := rs.store.DeleteRecords(ctx, totpKind, user); err != nil {
		return storeAPIError(err)
	}
	if _, _, err := rs.store.TakeTemp(ctx, totpPendingKey(user)); err != nil {
		return storeAPIError(err)
	}
	ids, err := rs.revoke(ctx, revocation{user: user})
	if err != nil {
		return storeAPIError(err)
	}
	countSecondFactor(realmName, "totp", "reset")
	a.logger.Warn("second factors reset through the admin API; sessions revoked",
		zap.String("realm", realmName), zap.String("user", user), zap.Strings("sids", ids))
	if ids == nil {
		ids = []string{}
	}
	return writeAdminJSON(w, map[string]any{"user": user, "revoked": ids})
}
