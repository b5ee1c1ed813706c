package tokenauth

import (
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The account page (cookies on): GET {endpoint}/account shows the
// signed-in user's passkeys, second factors and sessions; its forms post
// back to it (same origin only) and land on it again. The JSON twins
// {endpoint}/sessions[/<sid>] serve API clients.

//go:embed account.html
var accountPageSource string

var accountTemplate = pageTemplate("account", accountPageSource)

// pageTemplate parses one of the endpoint's own pages (account, invite),
// which wear the built-in login page's style: {{template "style"}}.
func pageTemplate(name, src string) *template.Template {
	t := template.Must(template.New(name).Parse(src))
	template.Must(t.New("style").Parse(builtinPageStyle))
	return t
}

// builtinPageStyle is the built-in login page's style sheet.
var builtinPageStyle = func() string {
	_, rest, _ := strings.Cut(builtinLoginPage, "<style>")
	style, _, _ := strings.Cut(rest, "</style>")
	return style
}()

// AccountPageData is what account.html gets.
type AccountPageData struct {
	Host     string
	Realm    string
	Endpoint string
	User     accountUser
	// Notice and Error are messages after a form's action, else "".
	Notice string
	Error  string
	// Passkeys is true when passkeys are on; PasskeyList is the user's.
	Passkeys    bool
	ScriptURL   string
	PasskeyList []accountPasskey
	// PasskeyOnly: the account has no password, so its last passkey is
	// its only way in.
	PasskeyOnly bool
	// Confirm is the passkey whose removal waits for confirmation.
	Confirm *accountPasskey
	// SecondFactors are the sections of the second-factor providers;
	// the section is not shown when there are none.
	SecondFactors []SecondFactorSection
	Sessions      []accountSession
}

type accountUser struct{ ID, Name, Email string }

type accountPasskey struct{ ID, Name, Created, LastUsed string }

type accountSession struct {
	SID, Created, LastUsed, Expires string
	Current                         bool
}

// SecondFactorSection is one provider's part of the account page's
// second-factor section: a title and the provider's own rendered HTML
// (from its own html/template, so escaped there).
type SecondFactorSection struct {
	Title string
	Body  template.HTML
}

// secondFactorProvider adds a second factor to the account page (TOTP,
// issue 14). section returns ok false when it has nothing for user.
type secondFactorProvider interface {
	accountSection(r *http.Request, user *User) (section SecondFactorSection, ok bool, err error)
}

// secondFactorProviders are the second factors the realm offers; none
// yet, so the account page shows no second-factor section.
func (ta *TokenAuth) secondFactorProviders() []secondFactorProvider { return nil }

// accountNotices and accountErrors word the codes the page's query may
// carry; unknown codes are ignored.
var (
	accountNotices = map[string]string{
		"passkey_added":   "Passkey added.",
		"passkey_removed": "Passkey removed.",
		"session_ended":   "That session has been signed out.",
	}
	accountErrors = map[string]string{
		"not_found":   "That passkey or session no longer exists.",
		"bad_request": "That did not work. Please try again.",
	}
)

// serveAccountEndpoint answers {endpoint}/account and the JSON twins
// {endpoint}/sessions[/<sid>]; handled is false for everything else.
func (ta *TokenAuth) serveAccountEndpoint(w http.ResponseWriter, r *http.Request, sub string) (handled bool, err error) {
	switch {
	case sub == "/account" && ta.cookiesEnabled():
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return true, ta.serveAccountPage(w, r)
		case http.MethodPost:
			return true, ta.handleAccountForm(w, r)
		}
		w.Header().Set("Allow", "GET, HEAD, POST")
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	case sub == "/sessions" && r.Method == http.MethodGet:
		return true, ta.handleListSessions(w, r)
	case strings.HasPrefix(sub, "/sessions/") && r.Method == http.MethodDelete:
		return true, ta.handleEndSession(w, r, strings.TrimPrefix(sub, "/sessions/"))
	case sub == "/sessions" || strings.HasPrefix(sub, "/sessions/"):
		w.Header().Set("Allow", map[bool]string{true: "GET", false: "DELETE"}[sub == "/sessions"])
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	}
	return false, nil
}

// accountSignedIn is the user of the request's access cookie; a page load
// without one is sent on to sign in (or refresh) and back.
func (ta *TokenAuth) accountSignedIn(w http.ResponseWriter, r *http.Request) (*accessClaims, *User, bool, error) {
	raw := cookieValue(r, accessCookieName)
	if claims, user, err := ta.acceptAccess(r.Context(), raw); err == nil {
		return claims, user, true, nil
	}
	if r.Method == http.MethodPost {
		// a form sent after the session ended: sign in, then back here
		return nil, nil, false, redirectTo(w, ta.loginPageURL(ta.accountPath(), "session_expired", ""), http.StatusSeeOther)
	}
	_, verifyErr := ta.tokens.verifyAccess(raw) // deny tells an expired token (go refresh) by it
	return nil, nil, false, ta.deny(w, r, "invalid_token", verifyErr)
}

func (ta *TokenAuth) accountPath() string { return ta.Endpoint + "/account" }

// serveAccountPage answers GET {endpoint}/account.
func (ta *TokenAuth) serveAccountPage(w http.ResponseWriter, r *http.Request) error {
	claims, user, ok, err := ta.accountSignedIn(w, r)
	if !ok {
		return err
	}
	q := r.URL.Query()
	data := AccountPageData{
		Host: hostname(r.Host), Realm: ta.Realm, Endpoint: ta.Endpoint,
		User:        accountUser{ID: user.ID, Name: user.Name, Email: user.Email},
		Notice:      accountNotices[q.Get("notice")],
		Error:       accountErrors[q.Get("error")],
		PasskeyOnly: user.Password == "",
	}
	if err := ta.fillAccountPasskeys(r, user, q.Get("confirm"), &data); err != nil {
		return ta.answerError(w, r, err)
	}
	for _, p := range ta.secondFactorProviders() {
		section, ok, err := p.accountSection(r, user)
		if err != nil {
			return ta.answerError(w, r, err)
		}
		if ok {
			data.SecondFactors = append(data.SecondFactors, section)
		}
	}
	sessions, err := ta.liveSessions(r, user.ID)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	for _, s := range sessions {
		data.Sessions = append(data.Sessions, accountSession{
			SID: s.ID, Created: pageTime(s.Created), LastUsed: pageTime(s.LastUsed),
			Expires: pageTime(s.deadline()), Current: s.ID == claims.SID,
		})
	}
	return ta.writePage(w, r, http.StatusOK, accountTemplate, data, builtinLoginCSP)
}

// fillAccountPasskeys lists the user's passkeys on the page, and the one
// whose removal awaits confirmation.
func (ta *TokenAuth) fillAccountPasskeys(r *http.Request, user *User, confirm string, data *AccountPageData) error {
	if !ta.passkeysOn() {
		return nil
	}
	data.Passkeys, data.ScriptURL = true, ta.Endpoint+passkeyScriptPath
	recs, err := ta.passkeys(r.Context(), user.ID)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		p := accountPasskey{ID: passkeyID(rec.Credential.ID), Name: rec.Name, Created: pageTime(rec.Created), LastUsed: "never"}
		if !rec.LastUsed.IsZero() {
			p.LastUsed = pageTime(rec.LastUsed)
		}
		data.PasskeyList = append(data.PasskeyList, p)
		if p.ID == confirm {
			data.Confirm = &p
		}
	}
	return nil
}

// pageTime is how the account page shows an instant.
func pageTime(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// liveSessions are a user's sessions that can still be used, newest first.
func (ta *TokenAuth) liveSessions(r *http.Request, userID string) ([]Session, error) {
	all, err := ta.realm.store.ListUser(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	now := ta.now()
	live := all[:0]
	for _, s := range all {
		if !s.Revoked && now.Before(s.deadline()) {
			live = append(live, s)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Created.After(live[j].Created) })
	return live, nil
}

// handleAccountForm answers the account page's forms (POST {endpoint}/account,
// same origin only): remove_passkey (id, confirm), sign_out (sid) and
// sign_out_everywhere. Each lands back on the page, or on the login page
// when it ended this session.
func (ta *TokenAuth) handleAccountForm(w http.ResponseWriter, r *http.Request) error {
	if requestOrigin(r) != originSame {
		return writeError(w, errCrossOrigin())
	}
	claims, user, ok, err := ta.accountSignedIn(w, r)
	if !ok {
		return err
	}
	if !isFormContent(contentType(r)) {
		return writeError(w, newAPIError(http.StatusUnsupportedMediaType, "Send a form"))
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	back := func(key, code string) error {
		return redirectTo(w, ta.accountPath()+"?"+url.Values{key: {code}}.Encode(), http.StatusSeeOther)
	}
	switch form.Get("action") {
	case "remove_passkey":
		if !ta.passkeysOn() {
			return back("error", "bad_request")
		}
		id := form.Get("id")
		err := ta.removePasskey(r, user, id, form.Get("confirm") == "yes")
		var apiErr *apiError
		switch {
		case err == nil:
			return back("notice", "passkey_removed")
		case errors.As(err, &apiErr) && apiErr.Code == http.StatusConflict:
			return back("confirm", id) // the page asks first
		case errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound:
			return back("error", "not_found")
		}
		return ta.answerError(w, r, err)
	case "sign_out":
		sid := form.Get("sid")
		if err := ta.endOwnSession(r, claims.Subject, sid); err != nil {
			var apiErr *apiError
			if errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound {
				return back("error", "not_found")
			}
			return ta.answerError(w, r, err)
		}
		if sid == claims.SID {
			ta.clearSessionCookies(w, r)
			return redirectTo(w, ta.loginPageURL("", "", "signed_out"), http.StatusSeeOther)
		}
		return back("notice", "session_ended")
	case "sign_out_everywhere":
		if err := ta.revokeUser(r.Context(), user.ID); err != nil {
			return ta.answerError(w, r, err)
		}
		ta.logger.Info("logout", zap.String("user", user.ID), zap.String("sid", claims.SID),
			zap.String("scope", "global"), zap.String("client_ip", clientIP(r)))
		ta.clearSessionCookies(w, r)
		return redirectTo(w, ta.loginPageURL("", "", "signed_out"), http.StatusSeeOther)
	}
	return back("error", "bad_request")
}

// endOwnSession revokes one of user's sessions; another user's session,
// or none, is 404.
func (ta *TokenAuth) endOwnSession(r *http.Request, user, sid string) error {
	s, err := ta.realm.store.Get(r.Context(), sid)
	if errors.Is(err, ErrSessionNotFound) || (err == nil && s.User != user) {
		return newAPIError(http.StatusNotFound, "No such session")
	}
	if err != nil {
		return err
	}
	if err := ta.revokeSession(r.Context(), sid); err != nil {
		return err
	}
	ta.logger.Info("logout", zap.String("user", user), zap.String("sid", sid), zap.String("client_ip", clientIP(r)))
	return nil
}

// handleListSessions answers GET {endpoint}/sessions: the caller's own
// sessions, in the admin API's shape.
func (ta *TokenAuth) handleListSessions(w http.ResponseWriter, r *http.Request) error {
	claims, _, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	list, err := ta.realm.store.ListUser(r.Context(), claims.Subject)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": adminSessions(list)})
}

// handleEndSession answers DELETE {endpoint}/sessions/<sid>: revokes one
// of the caller's own sessions (another user's is 404).
func (ta *TokenAuth) handleEndSession(w http.ResponseWriter, r *http.Request, sid string) error {
	claims, _, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	if err := ta.endOwnSession(r, claims.Subject, sid); err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": []string{sid}})
}
