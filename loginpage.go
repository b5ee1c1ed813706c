package tokenauth

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

//go:embed loginpage.html
var builtinLoginPage string

// builtinLoginTemplate is the login page served unless login_page names
// another one.
var builtinLoginTemplate = template.Must(template.New("login").Parse(builtinLoginPage))

// builtinLoginCSP allows the built-in pages nothing but their own inline
// style, the endpoint's own script (passkeys.js: nothing inline), its
// requests to this origin, and forms posted to this origin.
const builtinLoginCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// LoginPageData is what a login page template gets (the `login_page`
// option). Every field is plain text; html/template escapes it.
type LoginPageData struct {
	// Action is the URL the form posts to (the endpoint path). The form
	// must use method="post" and send `username` (or `email`), `password`
	// and `redirect` as application/x-www-form-urlencoded.
	Action string
	// Redirect is where to go after signing in, already checked to be a
	// path on this site: put it in a hidden `redirect` field.
	Redirect string
	// Error is a message to show after a failed attempt, else "".
	Error string
	// ErrorCode names the error for templates that word it themselves:
	// invalid_login, session_expired, too_many_attempts, unavailable,
	// bad_request, passkey_failed or mfa_expired (the second step of a
	// login waited too long); "" when there is none.
	ErrorCode string
	// Notice is an informational message (after signing out), else "".
	Notice string
	// NoticeCode names the notice: signed_out, or "".
	NoticeCode string
	// Host is the site's host name as the browser sent it, without the port.
	Host string
	// Realm is the token_auth realm.
	Realm string
	// Endpoint is the endpoint path; {{.Endpoint}}/logout signs out.
	Endpoint string
	// Passkeys is true when passkey sign-in is on. A template then adds
	//   <script src="{{.ScriptURL}}" data-endpoint="{{.Endpoint}}" defer></script>
	// a button with id="passkey-button" (the script shows it where the
	// browser has passkeys, so leave it `hidden`), and
	// autocomplete="username webauthn" on the user field for autofill.
	// The script posts the passkey's answer to Action with the page's
	// `redirect` field, like the password form.
	Passkeys bool
	// ScriptURL is the endpoint's passkey script ({endpoint}/passkeys.js).
	ScriptURL string
	// IdentityProviders are the `identity_provider` buttons, in the
	// config's order: link each {{.URL}} with the text "Sign in with
	// {{.Label}}" (a plain GET link; the URL already carries Redirect).
	IdentityProviders []LoginPageProvider
	// PasswordLogin says whether to show the password form: false when the
	// realm has no password users but has identity providers.
	PasswordLogin bool
	// Username is what was typed in the user field (username or email) of
	// the failed attempt that led here, to fill it in again: put it in the
	// field's value attribute. Never the password; "" otherwise.
	Username string
}

// LoginPageProvider is one identity provider button of the login page.
type LoginPageProvider struct {
	Name  string // the provider's name in the config
	Label string // its label: "Sign in with <Label>"
	URL   string // {endpoint}/idp/<name>?redirect=<Redirect>
}

// loginErrors and loginNotices word the codes carried in the login page's
// query string; unknown codes are ignored, so nothing from the URL is
// ever shown as is.
var (
	loginErrors = map[string]string{
		"invalid_login":     "Wrong username or password. Please try again.",
		"session_expired":   "Your session has ended. Please sign in again.",
		"too_many_attempts": "Too many failed attempts. Please wait a while and try again.",
		"unavailable":       "Signing in is not possible right now. Please try again shortly.",
		"bad_request":       "Please enter your username and password.",
		"idp_failed":        "Signing in with that provider did not work, or that account may not sign in here.",
		"passkey_failed":    "That passkey did not sign you in. Please try again.",
		"mfa_expired":       "Signing in took too long. Please enter your password again.",
	}
	loginNotices = map[string]string{
		"signed_out": "You have been signed out.",
	}
)

// loadLoginPage parses the operator's login page template and renders it
// once with sample data, so that a broken template stops the config from
// loading instead of failing at the first visitor.
func loadLoginPage(path string) (*template.Template, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("login_page: %w", err)
	}
	tmpl, err := template.New("login").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("login_page %s: %w", path, err)
	}
	sample := LoginPageData{Action: "/authentication", Redirect: "/", Error: "x", ErrorCode: "invalid_login",
		Notice: "x", NoticeCode: "signed_out", Host: "example.com", Realm: "default", Endpoint: "/authentication",
		Passkeys: true, ScriptURL: "/authentication/passkeys.js",
		IdentityProviders: []LoginPageProvider{{Name: "example", Label: "Example", URL: "/authentication/idp/example"}}, PasswordLogin: true, Username: "x"}
	if err := tmpl.Execute(io.Discard, sample); err != nil {
		return nil, fmt.Errorf("login_page %s: %w", path, err)
	}
	return tmpl, nil
}

// loginPageURL is the login page's address with a redirect target and,
// optionally, an error or notice code.
func (ta *TokenAuth) loginPageURL(redirect, errorCode, noticeCode string) string {
	q := url.Values{}
	if redirect = sanitizeRedirect(redirect); redirect != "/" {
		q.Set("redirect", redirect)
	}
	if errorCode != "" {
		q.Set("error", errorCode)
	}
	if noticeCode != "" {
		q.Set("notice", noticeCode)
	}
	if len(q) == 0 {
		return ta.Endpoint
	}
	return ta.Endpoint + "?" + q.Encode()
}

// hostname is a Host header without its port.
func hostname(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return hostport
}

// serveLoginPage answers GET and HEAD {endpoint}.
func (ta *TokenAuth) serveLoginPage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	data := LoginPageData{
		Action:   ta.Endpoint,
		Redirect: sanitizeRedirect(q.Get("redirect")),
		Host:     hostname(r.Host),
		Realm:    ta.Realm,
		Endpoint: ta.Endpoint,
	}
	if ta.passkeysOn() {
		data.Passkeys, data.ScriptURL = true, ta.Endpoint+passkeyScriptPath
	}
	data.IdentityProviders, data.PasswordLogin = ta.loginPageProviders(data.Redirect) // idp.go
	if msg, ok := loginErrors[q.Get("error")]; ok {
		data.Error, data.ErrorCode = msg, q.Get("error")
	}
	if msg, ok := loginNotices[q.Get("notice")]; ok {
		data.Notice, data.NoticeCode = msg, q.Get("notice")
	}
	data.Username = ta.takeLoginName(w, r)
	if ta.loginTemplate == nil {
		return ta.writePage(w, r, http.StatusOK, builtinLoginTemplate, data, builtinLoginCSP)
	}
	return ta.writePage(w, r, http.StatusOK, ta.loginTemplate, data, "frame-ancestors 'none'")
}

// writePage renders one of the endpoint's HTML pages, never cached or
// framed, under the given Content-Security-Policy.
func (ta *TokenAuth) writePage(w http.ResponseWriter, r *http.Request, status int, tmpl *template.Template, data any, csp string) error {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		ta.logger.Error("rendering "+tmpl.Name()+" page", zap.Error(err))
		return writeError(w, errServerFault())
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", ta.ssoFormAction(csp)) // sso.go
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// After a failed form login the login page shows the user field as it was
// typed (never the password). The name goes from the POST to the page
// shown next (its 303) in a cookie only the endpoint sees, not in the
// URL, where it would reach access logs and the browser's history; the
// page that shows it clears it.
const (
	loginNameCookieName = "login_name"
	loginNameTTL        = 5 * time.Minute
	// maxLoginNameLength bounds a remembered name, in bytes.
	maxLoginNameLength = 256
)

// loginNameOf is what a login form's user field held.
func loginNameOf(form url.Values) string {
	if name := strings.TrimSpace(form.Get("username")); name != "" {
		return name
	}
	return strings.TrimSpace(form.Get("email"))
}

// rememberLoginName keeps name for the login page shown next.
func (ta *TokenAuth) rememberLoginName(w http.ResponseWriter, r *http.Request, name string) {
	if name == "" || len(name) > maxLoginNameLength {
		return
	}
	http.SetCookie(w, ta.loginNameCookie(r, base64.RawURLEncoding.EncodeToString([]byte(name)), int(loginNameTTL/time.Second)))
}

// takeLoginName returns the remembered name, if any, and forgets it.
func (ta *TokenAuth) takeLoginName(w http.ResponseWriter, r *http.Request) string {
	raw := cookieValue(r, loginNameCookieName)
	if raw == "" {
		return ""
	}
	http.SetCookie(w, ta.loginNameCookie(r, "", -1))
	name, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(name) > maxLoginNameLength || !utf8.Valid(name) {
		return ""
	}
	return string(name) // html/template escapes it
}

func (ta *TokenAuth) loginNameCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: loginNameCookieName, Value: value, Path: ta.Endpoint, MaxAge: maxAge,
		HttpOnly: true, Secure: secureRequest(r), SameSite: http.SameSiteStrictMode}
}
