package tokenauth

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// Invitations: the first passkey of an account without a password. The
// admin API (or `caddy token-auth-users invite`) makes a one-time link,
// valid 24 hours; whoever opens it registers a passkey for that account and
// is signed in.

const (
	passkeyInvitePrefix = "passkey:invite:" // + the code
	inviteTTL           = 24 * time.Hour
)

// passkeyInvite is an invitation, kept in the realm's store under its code.
type passkeyInvite struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

// inviteRegistry knows the passkey handlers of each realm, so the admin
// API can find the realm's users and where its endpoint is.
type inviteRegistry struct {
	mu       sync.Mutex
	handlers map[string][]*TokenAuth
}

var invitations inviteRegistry

func (reg *inviteRegistry) add(ta *TokenAuth) {
	if !ta.passkeysOn() {
		return
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.handlers == nil {
		reg.handlers = make(map[string][]*TokenAuth)
	}
	reg.handlers[ta.Realm] = append(reg.handlers[ta.Realm], ta)
}

func (reg *inviteRegistry) remove(ta *TokenAuth) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	list := reg.handlers[ta.Realm]
	for i, h := range list {
		if h == ta {
			reg.handlers[ta.Realm] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
}

// handlerFor finds the newest passkey handler of realm that has user.
func (reg *inviteRegistry) handlerFor(realm, user string) (ta *TokenAuth, realmHasPasskeys bool) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	list := reg.handlers[realm]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].users.byID(user) != nil {
			return list[i], true
		}
	}
	return nil, len(list) > 0
}

// inviteRequest is the body of POST /token_auth/<realm>/invites.
type inviteRequest struct {
	User string `json:"user"`
	// Origin is the site the link points to (scheme://host[:port]).
	// Default: the first of the passkeys' origins, else https://<rp_id>.
	Origin string `json:"origin"`
}

// serveInvites answers POST /token_auth/<realm>/invites {"user"} on the
// admin API: 201 {"url","expires"}.
func (a *adminAPI) serveInvites(w http.ResponseWriter, r *http.Request, escapedRealm string) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	realmName, err := url.PathUnescape(escapedRealm)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("invalid realm name")}
	}
	var req inviteRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBodySize)).Decode(&req); err != nil || req.User == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`send {"user":"<id>"}`)}
	}
	ta, realmHasPasskeys := invitations.handlerFor(realmName, req.User)
	switch {
	case !realmHasPasskeys:
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no realm %q with passkeys on is configured", realmName)}
	case ta == nil:
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no user %q in realm %q", req.User, realmName)}
	}
	origin, err := ta.inviteOrigin(req.Origin)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	code := randomID()
	inv := passkeyInvite{User: req.User, Expires: ta.now().Add(inviteTTL).UTC()}
	data, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	if err := ta.realm.store.PutTemp(r.Context(), passkeyInvitePrefix+code, data, inviteTTL); err != nil {
		return storeAPIError(err)
	}
	a.logger.Info("passkey invitation made", zap.String("realm", realmName), zap.String("user", req.User),
		zap.Time("expires", inv.Expires))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	return json.NewEncoder(w).Encode(map[string]string{
		"url":     origin + ta.Endpoint + "/invite/" + code,
		"expires": inv.Expires.Format(time.RFC3339),
	})
}

// inviteOrigin is the site an invitation link points to.
func (ta *TokenAuth) inviteOrigin(asked string) (string, error) {
	switch {
	case asked != "":
		u, err := url.Parse(asked)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", fmt.Errorf("origin %q must be scheme://host[:port]", asked)
		}
		return u.Scheme + "://" + u.Host, nil
	case len(ta.Passkeys.Origins) > 0:
		return strings.TrimSuffix(ta.Passkeys.Origins[0], "/"), nil
	case ta.Passkeys.RPID != "":
		return "https://" + ta.Passkeys.RPID, nil
	}
	// Never a Host header seen in some request: that is the client's to
	// choose, and a link to another site would hand it the invitation.
	return "", errors.New(`which site should the link point to? Pass {"origin":"https://..."} (--origin), or set the passkeys' rp_id or origins`)
}

//go:embed invite.html
var invitePageSource string

var inviteTemplate = pageTemplate("invite", invitePageSource)

// InvitePageData is what invite.html gets.
type InvitePageData struct {
	Host, Endpoint, ScriptURL string
	// Action is where the new passkey is posted ({endpoint}/invite/<code>).
	Action string
	// Gone: the invitation was used or has expired.
	Gone  bool
	Error string
	User  accountUser
}

// serveInvite answers {endpoint}/invite/<code>: GET the page, POST
// .../options the registration options, POST the new passkey (a form,
// which signs the person in).
func (ta *TokenAuth) serveInvite(w http.ResponseWriter, r *http.Request, rest string) error {
	code, options := strings.CutSuffix(rest, "/options")
	switch {
	case options && r.Method == http.MethodPost:
		return ta.handleInviteOptions(w, r, code)
	case !options && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return ta.serveInvitePage(w, r, code, r.URL.Query().Get("error") != "")
	case !options && r.Method == http.MethodPost:
		return ta.handleInviteRegister(w, r, code)
	}
	w.Header().Set("Allow", map[bool]string{true: "POST", false: "GET, HEAD, POST"}[options])
	return writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
}

// openInvite reads an invitation without using it up; nil when it was
// used, has expired, or names a user who is gone.
func (ta *TokenAuth) openInvite(r *http.Request, code string) (*User, error) {
	data, found, err := ta.realm.store.GetTemp(r.Context(), passkeyInvitePrefix+code)
	if err != nil || !found {
		return nil, err
	}
	var inv passkeyInvite
	if err := json.Unmarshal(data, &inv); err != nil || !ta.now().Before(inv.Expires) {
		return nil, nil
	}
	return ta.users.byID(inv.User), nil
}

func (ta *TokenAuth) serveInvitePage(w http.ResponseWriter, r *http.Request, code string, failed bool) error {
	user, err := ta.openInvite(r, code)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	data := InvitePageData{Host: hostname(r.Host), Endpoint: ta.Endpoint, ScriptURL: ta.Endpoint + passkeyScriptPath,
		Action: ta.Endpoint + "/invite/" + code}
	status := http.StatusOK
	if user == nil {
		data.Gone, status = true, http.StatusGone
	} else {
		data.User = accountUser{ID: user.ID, Name: user.Name, Email: user.Email}
		if failed {
			data.Error = "The passkey could not be created. Please try again."
		}
	}
	return ta.writePage(w, r, status, inviteTemplate, data, builtinLoginCSP)
}

// handleInviteOptions answers POST {endpoint}/invite/<code>/options.
func (ta *TokenAuth) handleInviteOptions(w http.ResponseWriter, r *http.Request, code string) error {
	if requestOrigin(r) == originCross {
		return writeError(w, errCrossOrigin())
	}
	user, err := ta.openInvite(r, code)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	if user == nil {
		return writeError(w, errInviteGone())
	}
	creation, err := ta.beginRegistration(r, user, passkeyChallenge{Purpose: "invite", User: user.ID, Invite: code})
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, creation)
}

func errInviteGone() *apiError {
	e := newAPIError(http.StatusNotFound, "This invitation has been used or has expired")
	e.Data = map[string]string{"reason": "invite_gone"}
	return e
}

// handleInviteRegister answers the invite page's form: verifies the new
// passkey, uses the invitation up, stores the passkey and signs in.
func (ta *TokenAuth) handleInviteRegister(w http.ResponseWriter, r *http.Request, code string) error {
	if requestOrigin(r) == originCross {
		return writeError(w, errCrossOrigin())
	}
	form, err := readForm(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	page := ta.Endpoint + "/invite/" + code
	var invited *User
	rec, err := ta.finishRegistration(r, json.RawMessage(form.Get("credential")), "", "invite",
		func(ch *passkeyChallenge) (*User, error) {
			if ch.Invite != code {
				return nil, fmt.Errorf("%w: challenge of another invitation", errPasskeyRefused)
			}
			if invited = ta.users.byID(ch.User); invited == nil {
				return nil, fmt.Errorf("%w: invited user is gone", errPasskeyRefused)
			}
			return invited, nil
		},
		func() error { return ta.redeemInvite(r, code, invited.ID) })
	if err != nil {
		var apiErr *apiError
		if errors.As(ta.registrationError(r, "", err), &apiErr) {
			return redirectTo(w, page+"?error=1", http.StatusSeeOther)
		}
		return ta.answerError(w, r, err)
	}
	amr := []string{"hwk"}
	if rec.Credential.Flags.UserVerified {
		amr = append(amr, "mfa")
	}
	session, err := ta.openSession(r, invited, amr)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	res, err := ta.issuePair(invited, session, "passkey")
	if err != nil {
		return ta.answerError(w, r, err)
	}
	ta.logger.Info("login succeeded", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("user", invited.ID),
		zap.String("sid", session.ID), zap.String("method", "passkey"), zap.String("via", "invite"))
	ta.countLoginMethod("passkey", "success")
	ta.setSessionCookies(w, r, res)
	return redirectTo(w, ta.accountPath()+"?notice=passkey_added", http.StatusSeeOther)
}

// redeemInvite uses an invitation up: of two racing redemptions one wins.
func (ta *TokenAuth) redeemInvite(r *http.Request, code, user string) error {
	data, found, err := ta.realm.store.TakeTemp(r.Context(), passkeyInvitePrefix+code)
	if err != nil {
		return err
	}
	var inv passkeyInvite
	if !found || json.Unmarshal(data, &inv) != nil || inv.User != user || !ta.now().Before(inv.Expires) {
		return fmt.Errorf("%w: invitation used or expired", errPasskeyRefused)
	}
	return nil
}

// inviteCommand is `caddy token-auth-users invite <id> --realm <r> [--address <admin>]`.
func inviteCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "invite <id>",
		Short: "Prints a one-time link (24 h) with which a user registers a passkey and signs in",
		Long: `
Asks the running Caddy (its admin API) for an invitation: a one-time link,
valid 24 hours, that lets the user register a passkey and signs them in.
For accounts without a password (passkey-only), it is their way in.

  caddy token-auth-users invite alice --realm default
  caddy token-auth-users invite alice --realm default --origin https://example.com
`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			c.SilenceUsage = true
			realm, _ := c.Flags().GetString("realm")
			address, _ := c.Flags().GetString("address")
			origin, _ := c.Flags().GetString("origin")
			return requestInvite(c.OutOrStdout(), address, realm, args[0], origin)
		},
	}
	c.Flags().String("realm", defaultRealm, "The token_auth realm")
	c.Flags().String("address", "", "The admin API's address (default: Caddy's, localhost:2019)")
	c.Flags().String("origin", "", "The site the link points to (default: from the passkeys settings)")
	return c
}

// requestInvite asks the admin API for an invitation and prints its link.
func requestInvite(out io.Writer, address, realm, user, origin string) error {
	address, err := caddycmd.DetermineAdminAPIAddress(address, nil, "", "")
	if err != nil {
		return err
	}
	body, _ := json.Marshal(inviteRequest{User: user, Origin: origin})
	resp, err := caddycmd.AdminAPIRequest(address, http.MethodPost, adminBase+url.PathEscape(realm)+"/invites",
		http.Header{"Content-Type": {"application/json"}}, strings.NewReader(string(body)))
	if err != nil {
		return err // AdminAPIRequest reports the admin API's own error answer
	}
	defer resp.Body.Close()
	var answer struct{ URL, Expires string }
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	_, err = fmt.Fprintf(out, "%s\n(single use, valid until %s)\n", answer.URL, answer.Expires)
	return err
}
