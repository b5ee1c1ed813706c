package tokenauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Second factors: how a session says it was signed in (RFC 8176 amr), the
// two-step login (a password, then a code against a single-use mfa_token)
// and `require mfa` in the guard. The TOTP factor itself is in totp.go.

// MFAConfig lets users add a second factor to their password.
type MFAConfig struct {
	// TOTP lets users add an authenticator app (RFC 6238 one-time codes:
	// 6 digits, 30 seconds, SHA-1, what every authenticator app takes).
	// A user who has set one up signs in with their password and then a
	// code (or one of their recovery codes).
	TOTP *TOTPConfig `json:"totp,omitempty"`
}

// amr values (RFC 8176 §2) of the sign-in methods.
const (
	amrPwd = "pwd" // a password
	amrOTP = "otp" // a one-time code (TOTP or a recovery code)
	amrMFA = "mfa" // two factors
)

// amrPasswordOTP is a sign-in with a password and a code.
var amrPasswordOTP = []string{amrPwd, amrOTP, amrMFA}

// hasTwoFactors says whether a sign-in used two factors: what `require
// mfa` asks of a token. Every way of signing in with two factors (a
// password and a code, a passkey with user verification) says "mfa".
func hasTwoFactors(amr []string) bool {
	return slices.Contains(amr, amrMFA)
}

// mfaLoginTTL is how long a password login waits for its second factor
// (a variable for tests).
var mfaLoginTTL = 5 * time.Minute

// pendingLogin is what an mfa_token stands for: a user whose password was
// right, waiting for a second factor.
type pendingLogin struct {
	User string    `json:"user"`
	At   time.Time `json:"at"`
	// Methods are the second factors the login offered (the code page
	// shows those).
	Methods []string `json:"methods,omitempty"`
}

// mfaTokenKey is the KV key of an mfa_token: its hash, so that what the
// store holds cannot be replayed as the token itself.
func mfaTokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "mfa:login:" + hex.EncodeToString(sum[:])
}

// errMFARequired answers a password login that needs a second factor.
func errMFARequired(token string, methods []string) *apiError {
	e := newAPIError(http.StatusUnauthorized, "A second factor is required")
	e.Data = map[string]any{"reason": "mfa_required", "mfa_token": token, "methods": methods}
	return e
}

// errMFAStepUp refuses a one-factor token where `require mfa` is on.
func errMFAStepUp() *apiError {
	e := newAPIError(http.StatusForbidden, "This needs a sign-in with two factors")
	e.Data = map[string]string{"reason": "mfa_required"}
	return e
}

// errInvalidCode answers a wrong, replayed or unusable code.
func errInvalidCode() *apiError {
	e := newAPIError(http.StatusUnauthorized, "Invalid code")
	e.Data = map[string]string{"reason": "invalid_code"}
	return e
}

// secondFactorMethods lists the second factors a password login of user
// asks for, in the contract's order (totp, passkey); empty when the
// password is enough. An authenticator app is always asked for once set
// up. A passkey is asked for only where this directive has `require mfa`:
// a passkey is also a way to sign in on its own, so a realm that does not
// need two factors lets its owner use the password alone. The directive
// that answers the login decides (not any directive of the realm): where
// only some routes need two factors (`require mfa` on another directive),
// the step-up page asks for the passkey when one of them is visited.
func (ta *TokenAuth) secondFactorMethods(ctx context.Context, user *User) ([]string, error) {
	var methods []string
	if ta.totp != nil {
		enrolled, err := ta.totp.enrolled(ctx, ta.realm.store, user.ID)
		if err != nil {
			return nil, err
		}
		if enrolled {
			methods = append(methods, "totp")
		}
	}
	if ta.RequireMFA && ta.passkeysOn() {
		recs, err := ta.passkeys(ctx, user.ID)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			methods = append(methods, "passkey")
		}
	}
	return methods, nil
}

// beginSecondFactor is the end of a password login for a user with a
// second factor: no session yet, a single-use mfa_token instead.
func (ta *TokenAuth) beginSecondFactor(r *http.Request, user *User, methods []string) error {
	token := randomID()
	value, err := json.Marshal(pendingLogin{User: user.ID, At: ta.now(), Methods: methods})
	if err != nil {
		return err
	}
	if err := ta.realm.store.PutTemp(r.Context(), mfaTokenKey(token), value, mfaLoginTTL); err != nil {
		return err
	}
	ta.countSecondFactor("login", "required")
	ta.logger.Info("password accepted; second factor required", zap.String("client_ip", clientIP(r)),
		zap.String("realm", ta.Realm), zap.String("user", user.ID), zap.Strings("methods", methods))
	return errMFARequired(token, methods)
}

// completeSecondFactor answers {"strategy":"totp","mfa_token","code" or
// "recovery_code"}: the second step of a login. A wrong code leaves the
// mfa_token usable (until it expires) and counts toward the throttle of
// the user and the client IP, as a wrong password does; the right one
// consumes it and opens the session.
func (ta *TokenAuth) completeSecondFactor(r *http.Request, mfaToken, code, recoveryCode string) (*authResult, error) {
	if mfaToken == "" || (code == "") == (recoveryCode == "") {
		return nil, newAPIError(http.StatusBadRequest, "Send mfa_token and either code or recovery_code")
	}
	_, user, err := ta.pendingLogin(r.Context(), mfaToken)
	if err != nil {
		return nil, err
	}
	if ta.totp == nil {
		return nil, errNotAuthenticated()
	}
	if err := ta.checkSecondFactor(r, user, code, recoveryCode); err != nil {
		return nil, err
	}
	return ta.finishSecondFactor(r, mfaToken, user, "totp", amrPasswordOTP)
}

// pendingLogin is the login an mfa_token stands for, and its user; a
// missing, expired or spent token, or a user since removed, is 401.
func (ta *TokenAuth) pendingLogin(ctx context.Context, mfaToken string) (*pendingLogin, *User, error) {
	if mfaToken == "" {
		return nil, nil, errNotAuthenticated()
	}
	raw, found, err := ta.realm.store.GetTemp(ctx, mfaTokenKey(mfaToken))
	if err != nil {
		return nil, nil, err
	}
	var pending pendingLogin
	if !found || json.Unmarshal(raw, &pending) != nil {
		ta.countSecondFactor("login", "invalid_token")
		return nil, nil, errNotAuthenticated()
	}
	user := ta.users.byID(pending.User)
	if user == nil {
		return nil, nil, errNotAuthenticated()
	}
	return &pending, user, nil
}

// finishSecondFactor ends a login whose second factor (method, signing in
// with amr) was accepted: the mfa_token is spent, once, and the session
// opened.
func (ta *TokenAuth) finishSecondFactor(r *http.Request, mfaToken string, user *User, method string, amr []string) (*authResult, error) {
	if _, found, err := ta.realm.store.TakeTemp(r.Context(), mfaTokenKey(mfaToken)); err != nil {
		return nil, err
	} else if !found {
		return nil, errNotAuthenticated() // spent by a concurrent request meanwhile
	}
	session, err := ta.openSession(r, user, slices.Clone(amr))
	if err != nil {
		return nil, err
	}
	ta.countLogin("success")
	ta.logger.Info("login succeeded", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("sid", session.ID), zap.Strings("amr", session.AMR))
	return ta.issuePair(user, session, method)
}

// checkSecondFactor verifies a TOTP code or a recovery code of user,
// throttled like passwords: a banned user or client IP gets 429 before
// any check, a wrong code counts against both.
func (ta *TokenAuth) checkSecondFactor(r *http.Request, user *User, code, recoveryCode string) error {
	ctx := r.Context()
	ip := clientIP(r)
	userKey, ipKey := "user:"+user.ID, "ip:"+ip
	method := "totp"
	if recoveryCode != "" {
		method = "recovery_code"
	}
	attempt, err := ta.beginAttempt(r, userKey, ipKey, user.ID)
	if err != nil {
		ta.countSecondFactor(method, "throttled")
		return err
	}
	var result codeResult
	if recoveryCode != "" {
		result, err = ta.totp.useRecoveryCode(ctx, ta.realm.store, user.ID, recoveryCode)
	} else {
		result, err = ta.totp.checkUserCode(ctx, ta.realm.store, user.ID, code, ta.now())
	}
	if err != nil {
		ta.countSecondFactor(method, "error")
		return errors.Join(err, attempt.cancel(ctx))
	}
	if result != codeAccepted {
		ta.countSecondFactor(method, result.String())
		ta.logger.Info("second factor failed", zap.String("client_ip", ip), zap.String("realm", ta.Realm),
			zap.String("user", user.ID), zap.String("method", method), zap.String("reason", result.String()))
		if err := attempt.failed(ctx); err != nil {
			return err
		}
		return errInvalidCode()
	}
	ta.countSecondFactor(method, "success")
	ta.logger.Info("second factor accepted", zap.String("client_ip", ip), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("method", method))
	return attempt.succeeded(ctx)
}

// stepUp upgrades a one-factor session to two factors after a code of its
// user.
func (ta *TokenAuth) stepUp(r *http.Request, user *User, sid, code, recoveryCode string) (*authResult, error) {
	if err := ta.checkSecondFactor(r, user, code, recoveryCode); err != nil {
		return nil, err
	}
	return ta.stepUpSession(r, user, sid, "totp", amrOTP, amrMFA)
}

// stepUpSession records a second factor (method, adding amr) on a
// session: the same session (id, generation, lifetime), a new amr and
// auth_time, and new tokens that carry them.
func (ta *TokenAuth) stepUpSession(r *http.Request, user *User, sid, method string, amr ...string) (*authResult, error) {
	now := ta.now()
	s, err := ta.realm.store.Update(r.Context(), sid, func(in *SignIn) error {
		in.AMR = mergeAMR(in.AMR, amr...)
		in.AuthTime = now
		return nil
	})
	if errors.Is(err, ErrSessionNotFound) {
		return nil, errNotAuthenticated()
	}
	if err != nil {
		return nil, err
	}
	ta.logger.Info("session stepped up to two factors", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("sid", sid), zap.String("method", method), zap.Strings("amr", s.AMR))
	return ta.issuePair(user, s, method)
}

// mergeAMR adds methods to amr, each once, keeping amr's order.
func mergeAMR(amr []string, methods ...string) []string {
	out := slices.Clone(amr)
	for _, m := range methods {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// provisionMFA loads what the configured second factors need.
func (ta *TokenAuth) provisionMFA(ctx caddy.Context) error {
	if ta.MFA == nil || ta.MFA.TOTP == nil {
		return nil
	}
	if ta.RequireMFA && !ta.cookiesEnabled() {
		ta.logger.Info("require mfa with cookies off: one-factor tokens get 403, there is no step-up page")
	}
	svc, err := ta.MFA.TOTP.provision(ctx, ta.Realm, ta.logger)
	if err != nil {
		return fmt.Errorf("mfa totp: %w", err)
	}
	ta.totp = svc
	return nil
}
