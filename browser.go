package tokenauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// The browser side of the endpoint (cookies on): the login page, form
// login, GET {endpoint}/refresh and POST {endpoint}/logout, and the
// guard's redirects for navigations.

// serveBrowserEndpoint answers the endpoint requests that belong to
// browsers; handled is false for everything else.
func (ta *TokenAuth) serveBrowserEndpoint(w http.ResponseWriter, r *http.Request, sub string) (handled bool, err error) {
	if !ta.cookiesEnabled() {
		return false, nil
	}
	switch {
	case sub == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return true, ta.serveLoginPage(w, r)
	case sub == "/refresh" && r.Method == http.MethodGet:
		return true, ta.handleBrowserRefresh(w, r)
	case sub == "/logout" && r.Method == http.MethodPost:
		return true, ta.handleBrowserLogout(w, r)
	case sub == "" && r.Method != http.MethodPost && r.Method != http.MethodDelete:
		w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	case sub == "/refresh" || sub == "/logout":
		allow := map[string]string{"/refresh": "GET", "/logout": "POST"}[sub]
		w.Header().Set("Allow", allow)
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	}
	return false, nil
}

// contentType is the request's media type, without parameters.
func contentType(r *http.Request) string {
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mediaType
}

// isFormContent says whether a body is a submitted HTML form.
func isFormContent(mediaType string) bool {
	return mediaType == "application/x-www-form-urlencoded"
}

// redirectTo answers with a redirect to a same-origin location.
func redirectTo(w http.ResponseWriter, location string, code int) error {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	return nil
}

// readForm reads an application/x-www-form-urlencoded body of at most
// maxBodySize bytes.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, newAPIError(http.StatusBadRequest, "Malformed form body")
	}
	return form, nil
}

// handleFormLogin answers POST {endpoint} form-encoded: 303 to the
// redirect target with both cookies, or 303 back to the login page with
// the error shown.
func (ta *TokenAuth) handleFormLogin(w http.ResponseWriter, r *http.Request) error {
	if requestOrigin(r) == originCross {
		// a login form on another site (login CSRF)
		return writeError(w, errCrossOrigin())
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	redirect := sanitizeRedirect(form.Get("redirect"))
	var res *authResult
	if form.Get("strategy") == "passkey" {
		// the login page's script posts the passkey's answer (passkeys.go)
		res, err = ta.passkeyLogin(r, json.RawMessage(form.Get("credential")))
	} else {
		res, err = ta.login(r, &authRequest{
			Strategy: "local",
			Username: strings.TrimSpace(form.Get("username")),
			Email:    strings.TrimSpace(form.Get("email")),
			Password: form.Get("password"),
		})
	}
	if token, ok := mfaTokenOf(err); ok {
		return ta.startCodePage(w, r, token, redirect) // mfapage.go
	}
	if err != nil {
		code := ta.browserErrorCode(r, err)
		if form.Get("strategy") == "passkey" {
			if code == "invalid_login" {
				code = "passkey_failed"
			}
		} else {
			ta.rememberLoginName(w, r, loginNameOf(form)) // loginpage.go
		}
		return redirectWithNote(w, r, ta.loginPageURL(redirect, code, ""), "Not signed in: "+loginErrors[code])
	}
	ta.setSessionCookies(w, r, res)
	return redirectWithNote(w, r, redirect, fmt.Sprintf("Signed in as %v: the session is in the access_token and refresh_token cookies of this answer. "+
		"(For the tokens in the body, POST JSON with Content-Type: application/json.)", res.User["id"]))
}

// redirectWithNote answers a form post with a 303 to location. A client
// that did not ask for HTML (curl -d) also gets a short text body saying
// what happened and where it goes, instead of an empty answer; a browser
// follows the redirect and never shows it.
func redirectWithNote(w http.ResponseWriter, r *http.Request, location, note string) error {
	if acceptsHTML(r) {
		return redirectTo(w, location, http.StatusSeeOther)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := redirectTo(w, location, http.StatusSeeOther); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s\nGoing on to %s (303 See Other).\n", note, location)
	return err
}

// browserErrorCode turns an endpoint error into a login page error code.
// Server faults are logged here, as answerError would.
func (ta *TokenAuth) browserErrorCode(r *http.Request, err error) string {
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		ta.logFault(r, err) // handler.go
		return "unavailable"
	}
	switch apiErr.Code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return "invalid_login"
	case http.StatusTooManyRequests:
		return "too_many_attempts"
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "bad_request"
	}
	return "unavailable"
}

// handleBrowserRefresh answers GET {endpoint}/refresh?redirect=<path>:
// rotates with the refresh cookie and goes back to where the browser was
// going; without a usable refresh cookie, to the login page.
func (ta *TokenAuth) handleBrowserRefresh(w http.ResponseWriter, r *http.Request) error {
	redirect := sanitizeRedirect(r.URL.Query().Get("redirect"))
	raw := cookieValue(r, refreshCookieName)
	if raw == "" {
		return redirectTo(w, ta.loginPageURL(redirect, "", ""), http.StatusSeeOther)
	}
	res, err := ta.refresh(r, raw)
	if err != nil {
		code := ta.browserErrorCode(r, err)
		if code == "invalid_login" {
			// the session is over (expired, revoked, reused): forget it
			ta.clearSessionCookies(w, r)
			code = "session_expired"
		}
		return redirectTo(w, ta.loginPageURL(redirect, code, ""), http.StatusSeeOther)
	}
	ta.setSessionCookies(w, r, res)
	return redirectTo(w, redirect, http.StatusSeeOther)
}

// handleBrowserLogout answers POST {endpoint}/logout: revokes the session
// of the cookies (with scope=global every session of the user), clears
// both cookies and goes to the login page, or to `redirect`.
func (ta *TokenAuth) handleBrowserLogout(w http.ResponseWriter, r *http.Request) error {
	if requestOrigin(r) == originCross {
		return writeError(w, errCrossOrigin())
	}
	form := url.Values{}
	if mediaType := contentType(r); isFormContent(mediaType) {
		var err error
		if form, err = readForm(w, r); err != nil {
			return ta.answerError(w, r, err)
		}
	}
	q := r.URL.Query()
	field := func(name string) string {
		if v := form.Get(name); v != "" {
			return v
		}
		return q.Get(name)
	}

	sid, user := ta.cookieSession(r)
	if sid != "" {
		var err error
		if field("scope") == "global" {
			err = ta.revokeUser(r.Context(), user)
		} else {
			err = ta.revokeSession(r.Context(), sid)
		}
		if err != nil {
			// the browser forgets its tokens all the same
			ta.logger.Error("logout: revoking the session failed", zap.String("user", user), zap.String("sid", sid), zap.Error(err))
		} else {
			ta.logger.Info("logout", zap.String("user", user), zap.String("sid", sid),
				zap.String("scope", field("scope")), zap.String("client_ip", clientIP(r)))
		}
	}
	ta.clearSessionCookies(w, r)
	location := ta.loginPageURL("", "", "signed_out")
	if v := field("redirect"); v != "" {
		location = sanitizeRedirect(v)
	}
	return redirectTo(w, location, http.StatusSeeOther)
}

// cookieSession names the session (and its user) of the request's
// cookies: from the access cookie while it is valid, else from the
// refresh cookie, so that signing out works after the access token
// expired. Both are "" when neither cookie holds a valid token.
func (ta *TokenAuth) cookieSession(r *http.Request) (sid, user string) {
	if c, err := ta.tokens.verifyAccess(cookieValue(r, accessCookieName)); err == nil {
		return c.SID, c.Subject
	}
	if c, err := ta.tokens.verifyRefresh(cookieValue(r, refreshCookieName)); err == nil {
		return c.SID, c.Subject
	}
	return "", ""
}
