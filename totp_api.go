package tokenauth

import (
	"net/http"

	"github.com/pquerna/otp"
	"go.uber.org/zap"
)

// The JSON side of TOTP for API clients, signed in with an access token
// (the Authorization header, or the access cookie from this origin):
//
//	POST {endpoint}/mfa/totp/setup              → 200 {"otpauth_uri","secret"}
//	POST {endpoint}/mfa/totp/confirm {"code"}   → 201 {"recovery_codes":[10]}
//	POST {endpoint}/mfa/totp/remove  {"code"}   → 200 {"removed":true}
//
// Setting up again while an app is set up is refused (409): remove it
// first, with a current code.

// serveMFAEndpoint answers the second-factor parts of the endpoint;
// handled is false for everything else.
func (ta *TokenAuth) serveMFAEndpoint(w http.ResponseWriter, r *http.Request, sub string) (handled bool, err error) {
	if ta.totp == nil {
		// without TOTP, the step-up page and the code page (the second
		// step of a password login under require mfa) still offer passkeys
		if (sub == "/mfa/step-up" || sub == "/mfa") && ta.passkeysOn() && ta.cookiesEnabled() {
			return ta.serveMFAPages(w, r, sub)
		}
		return false, nil
	}
	switch sub {
	case "/mfa/totp/setup", "/mfa/totp/confirm", "/mfa/totp/remove":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
		}
		return true, ta.serveTOTPAPI(w, r, sub)
	}
	if ta.cookiesEnabled() {
		return ta.serveMFAPages(w, r, sub)
	}
	return false, nil
}

func (ta *TokenAuth) serveTOTPAPI(w http.ResponseWriter, r *http.Request, sub string) error {
	claims, user, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	var req *authRequest
	if sub != "/mfa/totp/setup" {
		body, err := readBody(w, r)
		if err != nil {
			return ta.answerError(w, r, err)
		}
		if req, err = decodeAuthRequest(body); err != nil {
			return ta.answerError(w, r, err)
		}
	}
	switch sub {
	case "/mfa/totp/setup":
		return ta.apiTOTPSetup(w, r, user)
	case "/mfa/totp/confirm":
		return ta.apiTOTPConfirm(w, r, user, claims, req.Code)
	default:
		return ta.apiTOTPRemove(w, r, user, req.Code)
	}
}

func (ta *TokenAuth) apiTOTPSetup(w http.ResponseWriter, r *http.Request, user *User) error {
	key, err := ta.beginTOTPSetup(r, user)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, map[string]string{"otpauth_uri": key.URL(), "secret": key.Secret()})
}

func (ta *TokenAuth) apiTOTPConfirm(w http.ResponseWriter, r *http.Request, user *User, _ *accessClaims, code string) error {
	codes, err := ta.confirmTOTPSetup(r, user, code)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusCreated, map[string][]string{"recovery_codes": codes})
}

func (ta *TokenAuth) apiTOTPRemove(w http.ResponseWriter, r *http.Request, user *User, code string) error {
	if err := ta.removeTOTP(r, user, code); err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"removed": true})
}

// errTOTPExists refuses a second set-up.
func errTOTPExists() *apiError {
	return newAPIError(http.StatusConflict, "An authenticator app is already set up; remove it first")
}

// beginTOTPSetup starts a set-up for a user who has none.
func (ta *TokenAuth) beginTOTPSetup(r *http.Request, user *User) (*otp.Key, error) {
	enrolled, err := ta.totp.enrolled(r.Context(), ta.realm.store, user.ID)
	if err != nil {
		return nil, err
	}
	if enrolled {
		return nil, errTOTPExists()
	}
	return ta.totp.setup(r.Context(), ta.realm.store, user.ID, hostname(r.Host))
}

// confirmTOTPSetup ends a set-up with a current code and returns the
// recovery codes.
func (ta *TokenAuth) confirmTOTPSetup(r *http.Request, user *User, code string) ([]string, error) {
	codes, result, err := ta.totp.confirm(r.Context(), ta.realm.store, user.ID, code, ta.now())
	if err != nil {
		return nil, err
	}
	switch result {
	case codeAccepted:
	case codeNoSetup:
		return nil, newAPIError(http.StatusBadRequest, "No set-up in progress: start one with setup")
	default:
		ta.countSecondFactor("totp_setup", result.String())
		return nil, errInvalidCode()
	}
	ta.countSecondFactor("totp_setup", "enrolled")
	ta.logger.Info("authenticator app set up", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("user", user.ID))
	return codes, nil
}

// removeTOTP removes a user's TOTP after a current code (throttled like
// any code: a stolen session cannot try codes freely).
func (ta *TokenAuth) removeTOTP(r *http.Request, user *User, code string) error {
	if code == "" {
		return newAPIError(http.StatusBadRequest, "Send a current code from the app")
	}
	if err := ta.checkSecondFactor(r, user, code, ""); err != nil {
		return err
	}
	if err := ta.totp.remove(r.Context(), ta.realm.store, user.ID); err != nil {
		return err
	}
	ta.countSecondFactor("totp", "removed")
	ta.logger.Info("authenticator app removed", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("user", user.ID))
	return nil
}
