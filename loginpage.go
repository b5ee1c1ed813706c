package tokenauth

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

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
	// invalid_login, session_expired, too_many_attempts, unavailable or
	// bad_request; "" when there is none.
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
		IdentityProviders: []LoginPageProvider{{Name: "example", Label: "Example", URL: "/authentication/idp/example"}}, PasswordLogin: true}
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
	h.Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(buf.Bytes())
	return err
}
