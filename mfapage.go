package tokenauth

import (
	_ "embed"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The browser side of second factors (cookies on):
//
//	GET|POST {endpoint}/mfa              the code page: the second step of a form login
//	GET|POST {endpoint}/mfa/step-up      adds the missing factor to a one-factor session (require mfa)
//	GET      {endpoint}/account/mfa      the authenticator app section on its own page
//	POST     {endpoint}/account/mfa/setup|confirm|remove
//
// Every POST is same-origin only (CSRF) and every page carries a redirect
// (a same-origin path) to go on to.

//go:embed mfapage.html
var mfaPagesSource string

// mfaPages wear the login page's style ({{template "style"}}, account.go).
var mfaPages = pageTemplate("mfa", mfaPagesSource)

// mfaCookieName holds the mfa_token between the password and the code
// page; only the endpoint sees it, for as long as the token lives.
const mfaCookieName = "mfa_token"

// mfaPageData is what the code, step-up and enrolment pages show.
type mfaPageData struct {
	Title, Intro string
	Host         string
	Action       string // where the code form posts
	Redirect     string
	Error        string
	TOTP         *totpSection
	// NoTOTP leaves the code forms out (a step-up with a passkey only).
	NoTOTP bool
	// Passkey offers a passkey as the factor (passkeys.js, served from
	// ScriptURL, drives the ceremony against Endpoint), with a button
	// saying PasskeyLabel.
	Passkey             bool
	PasskeyLabel        string
	Endpoint, ScriptURL string
}

// totpSection is the authenticator app part of the account page.
type totpSection struct {
	Endpoint string
	Redirect string
	Error    string
	Notice   string
	// Enrolled, with the recovery codes left, when an app is set up.
	Enrolled     bool
	RecoveryLeft int
	// During a set-up: the key as a QR code and as text.
	QR     template.URL
	Secret string
	// Right after confirming: the recovery codes, shown this once.
	RecoveryCodes []string
}

// codeErrors word the error codes of the code pages.
var codeErrors = map[string]string{
	"invalid_code":      "That code is not right, or was already used. Please try the current one.",
	"too_many_attempts": "Too many failed attempts. Please wait a while and try again.",
	"passkey_failed":    "That passkey did not confirm it’s you. Please try again, with its PIN or fingerprint.",
	"unavailable":       "This is not possible right now. Please try again shortly.",
}

// serveMFAPages answers the browser pages of second factors.
func (ta *TokenAuth) serveMFAPages(w http.ResponseWriter, r *http.Request, sub string) (bool, error) {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case sub == "/mfa" && get:
		return true, ta.serveCodePage(w, r)
	case sub == "/mfa" && post:
		return true, ta.handleCodeForm(w, r)
	case sub == "/mfa/step-up" && get:
		return true, ta.serveStepUpPage(w, r)
	case sub == "/mfa/step-up" && post:
		return true, ta.handleStepUpForm(w, r)
	case sub == "/account/mfa" && get:
		return true, ta.serveEnrolPage(w, r)
	case post && (sub == "/account/mfa/setup" || sub == "/account/mfa/confirm" || sub == "/account/mfa/remove"):
		return true, ta.handleEnrolForm(w, r, strings.TrimPrefix(sub, "/account/mfa/"))
	case sub == "/mfa" || sub == "/mfa/step-up" || sub == "/account/mfa":
		w.Header().Set("Allow", "GET, HEAD, POST")
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	}
	return false, nil
}

// renderMFA writes one of the pages of mfapage.html.
func (ta *TokenAuth) renderMFA(w http.ResponseWriter, r *http.Request, name string, data *mfaPageData) error {
	data.Host = hostname(r.Host)
	return ta.writePage(w, r, http.StatusOK, mfaPages.Lookup(name), data, builtinLoginCSP)
}

// pageURL is an endpoint page's address with a redirect and an error code.
func (ta *TokenAuth) pageURL(sub, redirect, errorCode string) string {
	q := url.Values{"redirect": {sanitizeRedirect(redirect)}}
	if errorCode != "" {
		q.Set("error", errorCode)
	}
	return ta.Endpoint + sub + "?" + q.Encode()
}

// codeErrorCode turns an error of a code check into a code page error code.
func (ta *TokenAuth) codeErrorCode(r *http.Request, err error) string {
	switch ta.browserErrorCode(r, err) {
	case "invalid_login":
		return "invalid_code"
	case "too_many_attempts":
		return "too_many_attempts"
	}
	return "unavailable"
}

// startCodePage is the end of a form login that needs a second factor:
// the mfa_token goes into a cookie for the endpoint, the browser to the
// code page.
func (ta *TokenAuth) startCodePage(w http.ResponseWriter, r *http.Request, token, redirect string) error {
	http.SetCookie(w, &http.Cookie{Name: mfaCookieName, Value: token, Path: ta.Endpoint, MaxAge: int(mfaLoginTTL / time.Second),
		HttpOnly: true, Secure: secureRequest(r), SameSite: http.SameSiteStrictMode})
	return redirectWithNote(w, r, ta.pageURL("/mfa", redirect, ""), "Not signed in yet: a second factor is needed, on the code page "+
		"(the mfa_token cookie of this answer carries the login there; API clients POST JSON and get the mfa_token in the body).")
}

// mfaTokenOf returns the mfa_token of a login answered "mfa_required".
func mfaTokenOf(err error) (string, bool) {
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		return "", false
	}
	data, _ := apiErr.Data.(map[string]any)
	if data["reason"] != "mfa_required" {
		return "", false
	}
	token, ok := data["mfa_token"].(string)
	return token, ok
}

// serveCodePage shows the second step of a login: the forms of the
// methods it offered (a code, a passkey).
func (ta *TokenAuth) serveCodePage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	pending, _, err := ta.pendingLogin(r.Context(), cookieValue(r, mfaCookieName))
	if err != nil {
		if apiErr := (*apiError)(nil); errors.As(err, &apiErr) && apiErr.Code == http.StatusUnauthorized {
			return redirectTo(w, ta.loginPageURL(q.Get("redirect"), "mfa_expired", ""), http.StatusSeeOther)
		}
		return ta.answerError(w, r, err)
	}
	totpOn := slices.Contains(pending.Methods, "totp")
	data := &mfaPageData{
		Title: "Two-step verification", Intro: "Enter the code from your authenticator app to sign in to",
		Action: ta.Endpoint + "/mfa", Redirect: sanitizeRedirect(q.Get("redirect")), Error: codeErrors[q.Get("error")],
		NoTOTP: !totpOn, Passkey: slices.Contains(pending.Methods, "passkey") && ta.passkeysOn(), PasskeyLabel: "Use a passkey",
		Endpoint: ta.Endpoint, ScriptURL: ta.Endpoint + passkeyScriptPath,
	}
	if !totpOn {
		data.Intro = "Confirm with your passkey to sign in to"
	}
	return ta.renderMFA(w, r, "code_page", data)
}

// handleCodeForm is the code page's form: the session's cookies and the
// redirect target on success, the code page again with an error otherwise.
func (ta *TokenAuth) handleCodeForm(w http.ResponseWriter, r *http.Request) error {
	if requestOrigin(r) == originCross { // as the login form
		return writeError(w, errCrossOrigin())
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	redirect := sanitizeRedirect(form.Get("redirect"))
	token := cookieValue(r, mfaCookieName)
	var res *authResult
	if credential := form.Get("credential"); credential != "" { // the passkey button (passkeys.js)
		if res, err = ta.completeWithPasskey(r, token, json.RawMessage(credential)); isInvalidLogin(err) {
			return redirectTo(w, ta.pageURL("/mfa", redirect, "passkey_failed"), http.StatusSeeOther)
		}
	} else {
		res, err = ta.completeSecondFactor(r, token, strings.TrimSpace(form.Get("code")), strings.TrimSpace(form.Get("recovery_code")))
	}
	var apiErr *apiError
	switch {
	case err == nil:
	case errors.As(err, &apiErr) && apiErr.Code == http.StatusUnauthorized && apiErr.Data == nil:
		// the mfa_token is gone (expired or spent): start again
		return redirectTo(w, ta.loginPageURL(redirect, "mfa_expired", ""), http.StatusSeeOther)
	default:
		return redirectTo(w, ta.pageURL("/mfa", redirect, ta.codeErrorCode(r, err)), http.StatusSeeOther)
	}
	http.SetCookie(w, &http.Cookie{Name: mfaCookieName, Path: ta.Endpoint, MaxAge: -1, HttpOnly: true, Secure: secureRequest(r)})
	ta.setSessionCookies(w, r, res)
	return redirectTo(w, redirect, http.StatusSeeOther)
}

// refuseOneFactor answers a guarded request whose token has one factor
// where `require mfa` is on: a page load goes to the step-up page, the
// rest get 403 mfa_required.
func (ta *TokenAuth) refuseOneFactor(w http.ResponseWriter, r *http.Request) error {
	if !ta.cookiesEnabled() || !isNavigation(r) {
		return writeError(w, errMFAStepUp())
	}
	return redirectTo(w, ta.pageURL("/mfa/step-up", originalRequestURI(r), ""), http.StatusFound)
}

// cookieUser is the signed-in user of a page request; ok is false when
// the answer (a redirect to sign in or refresh, or a refusal) is written.
func (ta *TokenAuth) cookieUser(w http.ResponseWriter, r *http.Request) (*accessClaims, *User, bool, error) {
	claims, user, err := ta.signedInUser(r)
	if err == nil {
		return claims, user, true, nil
	}
	var apiErr *apiError
	if errors.As(err, &apiErr) && apiErr.Code == http.StatusForbidden {
		return nil, nil, false, writeError(w, apiErr)
	}
	raw, _ := ta.accessToken(r)
	_, verifyErr := ta.tokens.verifyAccess(raw)
	return nil, nil, false, ta.deny(w, r, "invalid_token", verifyErr)
}

func (ta *TokenAuth) serveStepUpPage(w http.ResponseWriter, r *http.Request) error {
	claims, user, ok, err := ta.cookieUser(w, r)
	if !ok {
		return err
	}
	q := r.URL.Query()
	redirect := sanitizeRedirect(q.Get("redirect"))
	if hasTwoFactors(claims.AMR) {
		return redirectTo(w, redirect, http.StatusSeeOther)
	}
	totpOn, passkeyOn, err := ta.stepUpFactors(r, user)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	if !totpOn && !passkeyOn {
		setUp := "/account/mfa"
		if ta.totp == nil {
			setUp = "/account" // where passkeys are added
		}
		return redirectTo(w, ta.pageURL(setUp, redirect, ""), http.StatusSeeOther)
	}
	data := &mfaPageData{
		Title: "Confirm it’s you", Intro: "This page needs a second factor. Enter the code from your authenticator app for",
		Action: ta.Endpoint + "/mfa/step-up", Redirect: redirect, Error: codeErrors[q.Get("error")],
		NoTOTP: !totpOn, Passkey: passkeyOn, PasskeyLabel: "Confirm with a passkey",
		Endpoint: ta.Endpoint, ScriptURL: ta.Endpoint + passkeyScriptPath,
	}
	if !totpOn {
		data.Intro = "This page needs a second factor. Confirm with your passkey for"
	}
	return ta.renderMFA(w, r, "code_page", data)
}

// stepUpFactors says which second factors user can add to a session:
// their authenticator app, their passkeys.
func (ta *TokenAuth) stepUpFactors(r *http.Request, user *User) (totpOn, passkeyOn bool, err error) {
	if ta.totp != nil {
		if totpOn, err = ta.totp.enrolled(r.Context(), ta.realm.store, user.ID); err != nil {
			return false, false, err
		}
	}
	if ta.passkeysOn() {
		recs, err := ta.passkeys(r.Context(), user.ID)
		if err != nil {
			return false, false, err
		}
		passkeyOn = len(recs) > 0
	}
	return totpOn, passkeyOn, nil
}

func (ta *TokenAuth) handleStepUpForm(w http.ResponseWriter, r *http.Request) error {
	claims, user, ok, err := ta.cookieUser(w, r)
	if !ok {
		return err
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	redirect := sanitizeRedirect(form.Get("redirect"))
	var res *authResult
	switch credential := form.Get("credential"); {
	case credential != "" && ta.passkeysOn(): // passkeys.js posts the assertion
		res, err = ta.passkeyStepUp(r, user, claims.SID, json.RawMessage(credential))
		if apiErr := (*apiError)(nil); errors.As(err, &apiErr) && apiErr.Code == http.StatusUnauthorized {
			return redirectTo(w, ta.pageURL("/mfa/step-up", redirect, "passkey_failed"), http.StatusSeeOther)
		}
	case ta.totp == nil:
		err = errInvalidCode()
	default:
		res, err = ta.stepUp(r, user, claims.SID, strings.TrimSpace(form.Get("code")), strings.TrimSpace(form.Get("recovery_code")))
	}
	if err != nil {
		return redirectTo(w, ta.pageURL("/mfa/step-up", redirect, ta.codeErrorCode(r, err)), http.StatusSeeOther)
	}
	ta.setSessionCookies(w, r, res)
	return redirectTo(w, redirect, http.StatusSeeOther)
}

// totpSectionFor is the section as it stands for user.
func (ta *TokenAuth) totpSectionFor(r *http.Request, user *User, redirect string) (*totpSection, error) {
	sec := &totpSection{Endpoint: ta.Endpoint, Redirect: redirect}
	enrolled, err := ta.totp.enrolled(r.Context(), ta.realm.store, user.ID)
	if err != nil || !enrolled {
		return sec, err
	}
	sec.Enrolled = true
	sec.RecoveryLeft, err = recoveryCodesLeft(r.Context(), ta.realm.store, user.ID)
	return sec, err
}

func (ta *TokenAuth) serveEnrolPage(w http.ResponseWriter, r *http.Request) error {
	_, user, ok, err := ta.cookieUser(w, r)
	if !ok {
		return err
	}
	sec, err := ta.totpSectionFor(r, user, sanitizeRedirect(r.URL.Query().Get("redirect")))
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return ta.renderEnrolPage(w, r, sec)
}

func (ta *TokenAuth) renderEnrolPage(w http.ResponseWriter, r *http.Request, sec *totpSection) error {
	return ta.renderMFA(w, r, "enrol_page", &mfaPageData{
		Title: "Two-step verification", Intro: "Protect your account on", TOTP: sec,
	})
}

// handleEnrolForm carries out a form of the TOTP section and shows the
// section again, as it stands afterwards.
func (ta *TokenAuth) handleEnrolForm(w http.ResponseWriter, r *http.Request, action string) error {
	claims, user, ok, err := ta.cookieUser(w, r)
	if !ok {
		return err
	}
	if requestOrigin(r) != originSame { // also for a form sent with a Bearer token
		return writeError(w, errCrossOrigin())
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	redirect := sanitizeRedirect(form.Get("redirect"))
	code := strings.TrimSpace(form.Get("code"))
	sec := &totpSection{Endpoint: ta.Endpoint, Redirect: redirect}
	switch action {
	case "setup":
		key, err := ta.beginTOTPSetup(r, user)
		if err == nil {
			sec.Secret = key.Secret()
			var qr string
			if qr, err = qrDataURL(key); err == nil {
				sec.QR = template.URL(qr) // a data: URL we made
			}
		}
		if err != nil {
			return ta.enrolFormFailed(w, r, user, redirect, err)
		}
	case "confirm":
		codes, err := ta.confirmTOTPSetup(r, user, code)
		if err != nil {
			return ta.enrolFormFailed(w, r, user, redirect, err)
		}
		sec.RecoveryCodes = codes
		// The person has just shown both factors: the session gets them.
		if res, err := ta.stepUpSession(r, user, claims.SID, "totp", amrOTP, amrMFA); err == nil {
			ta.setSessionCookies(w, r, res)
		} else {
			ta.logger.Warn("stepping up the session after a TOTP set-up failed", zap.String("user", user.ID), zap.Error(err))
		}
	case "remove":
		if err := ta.removeTOTP(r, user, code); err != nil {
			return ta.enrolFormFailed(w, r, user, redirect, err)
		}
		sec.Notice = "The authenticator app is removed."
	}
	return ta.renderEnrolPage(w, r, sec)
}

// enrolFormFailed shows the section with what went wrong.
func (ta *TokenAuth) enrolFormFailed(w http.ResponseWriter, r *http.Request, user *User, redirect string, cause error) error {
	sec, err := ta.totpSectionFor(r, user, redirect)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	var apiErr *apiError
	switch {
	case errors.As(cause, &apiErr) && apiErr.Code == http.StatusTooManyRequests:
		sec.Error = codeErrors["too_many_attempts"]
	case errors.As(cause, &apiErr) && apiErr.Code < 500:
		sec.Error = apiErr.Message
	default:
		ta.logger.Error("second-factor form failed", zap.String("user", user.ID), zap.Error(cause))
		sec.Error = codeErrors["unavailable"]
	}
	return ta.renderEnrolPage(w, r, sec)
}

// totpAccountSection is the authenticator app's part of the account page
// (account.go): its state and forms; the forms' steps (the QR code, the
// recovery codes) show on {endpoint}/account/mfa, which leads back.
type totpAccountSection struct{ ta *TokenAuth }

func (p totpAccountSection) accountSection(r *http.Request, user *User) (SecondFactorSection, bool, error) {
	sec, err := p.ta.totpSectionFor(r, user, p.ta.accountPath())
	if err != nil {
		return SecondFactorSection{}, false, err
	}
	var buf strings.Builder
	if err := mfaPages.ExecuteTemplate(&buf, "totp_section", sec); err != nil {
		return SecondFactorSection{}, false, err
	}
	// html/template escaped it
	return SecondFactorSection{Title: "Authenticator app", Body: template.HTML(buf.String())}, true, nil
}

var _ secondFactorProvider = totpAccountSection{}
