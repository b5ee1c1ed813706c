package tokenauth

import (
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"
)

// OIDC Back-Channel Logout 1.0: the provider POSTs a logout_token when the
// person signs out there, and every session of ours that came from that
// provider session (sid) or, without a sid, from that person (sub) is
// revoked on every instance, through the one revocation path.

// idpLogoutJTIPrefix keys the replay cache of logout tokens.
const idpLogoutJTIPrefix = "idp:logout-jti:"

// handleBackchannelLogout answers POST {endpoint}/idp/<name>/backchannel-logout.
func (ta *TokenAuth) handleBackchannelLogout(w http.ResponseWriter, r *http.Request, p *idpRuntime) error {
	verifier, ok := p.backend.(logoutVerifier)
	if !ok {
		return writeError(w, newAPIError(http.StatusNotFound, "This identity provider has no back-channel logout"))
	}
	w.Header().Set("Cache-Control", "no-store")
	if !isFormContent(contentType(r)) {
		return writeLogoutError(w, "send application/x-www-form-urlencoded with logout_token")
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	raw := form.Get("logout_token")
	if raw == "" || len(raw) > maxTokenSize {
		return writeLogoutError(w, "logout_token missing or too large")
	}
	claims, err := verifier.verifyLogout(r.Context(), raw)
	if errors.Is(err, errIdPNotReady) {
		w.Header().Set("Retry-After", "30")
		return writeError(w, newAPIError(http.StatusServiceUnavailable, "Identity provider not reachable yet"))
	}
	if err != nil {
		ta.logger.Warn("back-channel logout refused", zap.String("client_ip", clientIP(r)), zap.String("idp", p.cfg.Name), zap.Error(err))
		return writeLogoutError(w, "invalid logout_token")
	}
	first, err := ta.realm.store.ClaimTemp(r.Context(), idpLogoutJTIPrefix+p.cfg.Name+":"+claims.JTI, logoutTokenMaxAge+2*idpClockSkew)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	if !first {
		ta.logger.Warn("back-channel logout refused: logout_token replayed", zap.String("client_ip", clientIP(r)), zap.String("idp", p.cfg.Name))
		return writeLogoutError(w, "logout_token replayed")
	}
	kind, owner := idpSubjectKind, p.cfg.Name+":"+claims.Subject
	if claims.SID != "" {
		kind, owner = idpSIDKind, p.cfg.Name+":"+claims.SID
	}
	n, err := ta.revokeRecorded(r, kind, owner)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	ta.logger.Info("back-channel logout", zap.String("realm", ta.Realm), zap.String("idp", p.cfg.Name),
		zap.String("idp_sub", claims.Subject), zap.String("idp_sid", claims.SID), zap.Int("sessions", n))
	w.WriteHeader(http.StatusOK)
	return nil
}

// revokeRecorded revokes every session recorded under kind/owner and
// forgets the record.
func (ta *TokenAuth) revokeRecorded(r *http.Request, kind, owner string) (int, error) {
	records, err := ta.realm.store.Records(r.Context(), kind, owner)
	if err != nil {
		return 0, err
	}
	for sid := range records {
		if err := ta.revokeSession(r.Context(), sid); err != nil {
			return 0, err
		}
	}
	return len(records), ta.realm.store.DeleteRecords(r.Context(), kind, owner)
}

// writeLogoutError is the 400 the spec asks for, in OAuth's error shape.
func writeLogoutError(w http.ResponseWriter, description string) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	return json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": description})
}
