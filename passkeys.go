package tokenauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"go.uber.org/zap"
)

// Passkeys (WebAuthn, through github.com/go-webauthn/webauthn): a signed-in
// user registers passkeys; anybody signs in with one (discoverable
// credentials, so no user name is typed). The ceremonies' challenges and
// the credentials live in the realm's store (KV), so any instance finishes
// what another began, and a passkey registered at one signs in at all.

// PasskeysConfig turns on passkeys (WebAuthn) for the realm's users: they
// add passkeys on the account page (or through the JSON API), and sign in
// with one on the login page (a button, and the browser's autofill) or
// with `{"strategy":"passkey"}` at the endpoint.
type PasskeysConfig struct {
	// Off keeps the settings but turns passkeys off (`passkeys off`).
	Off bool `json:"off,omitempty"`

	// RPID is the relying party id: the domain passkeys are bound to. A
	// passkey made for one RP ID never signs in under another, so choose
	// it once: a parent domain (example.com) lets every subdomain's site
	// use the same passkeys. Default: the host name of each request's site.
	RPID string `json:"rp_id,omitempty"`

	// RPName is the name the browser shows when it asks to create a
	// passkey. Default: the realm name.
	RPName string `json:"rp_name,omitempty"`

	// Origins are the web origins (scheme://host[:port]) allowed to use
	// the passkeys. Default: the request's own origin.
	Origins []string `json:"origins,omitempty"`

	// UserVerification is whether the authenticator must check who holds
	// it (PIN, fingerprint, face): required, preferred or discouraged. A
	// passkey sign-in with user verification counts as two factors (amr
	// hwk and mfa), one without as one (hwk). Default: preferred.
	UserVerification string `json:"user_verification,omitempty"`
}

// passkeysOn says whether the handler offers passkeys.
func (ta *TokenAuth) passkeysOn() bool {
	return ta.Passkeys != nil && !ta.Passkeys.Off
}

// validate checks the operator's settings.
func (c *PasskeysConfig) validate() error {
	if err := c.validateUserVerification(); err != nil {
		return err
	}
	if err := c.validateRPID(); err != nil {
		return err
	}
	for _, o := range c.Origins {
		if err := c.validateOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

func (c *PasskeysConfig) validateUserVerification() error {
	switch c.UserVerification {
	case "", "required", "preferred", "discouraged":
		return nil
	}
	return fmt.Errorf("passkeys: user_verification must be required, preferred or discouraged, got %q", c.UserVerification)
}

func (c *PasskeysConfig) validateRPID() error {
	if c.RPID == "" {
		return nil
	}
	if err := protocol.ValidateRPID(c.RPID); err != nil {
		return fmt.Errorf("passkeys: rp_id %q: %v", c.RPID, err)
	}
	return nil
}

// validateOrigin checks one origin: scheme://host[:port], within rp_id.
func (c *PasskeysConfig) validateOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("passkeys: origin %q must be scheme://host[:port]", o)
	}
	if c.RPID != "" && !hostWithin(u.Hostname(), c.RPID) {
		return fmt.Errorf("passkeys: origin %q is not within rp_id %q", o, c.RPID)
	}
	return nil
}

// hostWithin says whether host is domain or one of its subdomains.
func hostWithin(host, domain string) bool {
	host, domain = strings.ToLower(host), strings.ToLower(domain)
	return host == domain || strings.HasSuffix(host, "."+domain)
}

func (c *PasskeysConfig) userVerification() protocol.UserVerificationRequirement {
	if c.UserVerification == "" {
		return protocol.VerificationPreferred
	}
	return protocol.UserVerificationRequirement(c.UserVerification)
}

// Keys and kinds in the realm's store.
const (
	passkeyKind            = "passkey"            // records: owner user id, id the credential id (base64url)
	passkeyChallengePrefix = "passkey:challenge:" // + the challenge: one ceremony, single use
	passkeyChallengeTTL    = 5 * time.Minute
	// maxRelyingParties bounds the per-host WebAuthn configurations kept;
	// the Host header is the client's, so the cache must not grow with it.
	maxRelyingParties = 64
	// maxPasskeyNameLength bounds a passkey's name, in characters.
	maxPasskeyNameLength = 64
)

// relyingParties caches the WebAuthn configuration per RP ID and origin
// (both default to the request's own host).
type relyingParties struct {
	mu  sync.Mutex
	all map[string]*webauthn.WebAuthn
}

// relyingParty is the WebAuthn configuration that serves this request.
func (ta *TokenAuth) relyingParty(r *http.Request) (*webauthn.WebAuthn, error) {
	cfg := ta.Passkeys
	rpID := cfg.RPID
	if rpID == "" {
		rpID = strings.TrimSuffix(strings.ToLower(hostname(r.Host)), ".")
	}
	origins := cfg.Origins
	if len(origins) == 0 {
		origins = []string{requestOriginURL(r)}
	}
	key := rpID + "\x00" + strings.Join(origins, " ")

	rps := ta.relyingParties
	rps.mu.Lock()
	defer rps.mu.Unlock()
	if rp, ok := rps.all[key]; ok {
		return rp, nil
	}
	name := cfg.RPName
	if name == "" {
		name = ta.Realm
	}
	rp, err := webauthn.New(&webauthn.Config{
		RPID:          rpID,
		RPDisplayName: name,
		RPOrigins:     origins,
		// Passkeys need no attestation: which maker built the
		// authenticator is not what lets a person in.
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			RequireResidentKey: protocol.ResidentKeyRequired(),
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			UserVerification:   cfg.userVerification(),
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: passkeyChallengeTTL, TimeoutUVD: passkeyChallengeTTL},
			Registration: webauthn.TimeoutConfig{Timeout: passkeyChallengeTTL, TimeoutUVD: passkeyChallengeTTL},
		},
	})
	if err != nil {
		return nil, newAPIError(http.StatusBadRequest, "Passkeys are not available on this host: "+err.Error())
	}
	if rps.all == nil || len(rps.all) >= maxRelyingParties {
		rps.all = make(map[string]*webauthn.WebAuthn)
	}
	rps.all[key] = rp
	return rp, nil
}

// requestOriginURL is the origin the browser is on: scheme://host[:port].
func requestOriginURL(r *http.Request) string {
	scheme := "http"
	if secureRequest(r) {
		scheme = "https"
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

// passkeyRecord is a stored passkey: the library's credential record plus
// what the account page shows.
type passkeyRecord struct {
	Name       string              `json:"name"`
	Created    time.Time           `json:"created"`
	LastUsed   time.Time           `json:"last_used,omitzero"`
	RPID       string              `json:"rp_id"`
	Credential webauthn.Credential `json:"credential"`
}

// passkeyID is how a credential id appears in URLs and records.
func passkeyID(credentialID []byte) string {
	return base64.RawURLEncoding.EncodeToString(credentialID)
}

// passkeys returns a user's passkeys, newest first.
func (ta *TokenAuth) passkeys(ctx context.Context, userID string) ([]passkeyRecord, error) {
	raw, err := ta.realm.store.Records(ctx, passkeyKind, userID)
	if err != nil {
		return nil, err
	}
	out := make([]passkeyRecord, 0, len(raw))
	for id, v := range raw {
		var rec passkeyRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			ta.logger.Error("passkey record unreadable; ignored", zap.String("user", userID), zap.String("passkey", id), zap.Error(err))
			continue
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

func (ta *TokenAuth) savePasskey(ctx context.Context, userID string, rec passkeyRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return ta.realm.store.PutRecord(ctx, passkeyKind, userID, passkeyID(rec.Credential.ID), data)
}

// passkeyUser is a realm user as the WebAuthn library sees it. The user
// handle is the user id: it is already the name people sign in with.
type passkeyUser struct {
	user  *User
	creds []webauthn.Credential
}

func (u *passkeyUser) WebAuthnID() []byte   { return []byte(u.user.ID) }
func (u *passkeyUser) WebAuthnName() string { return u.user.ID }
func (u *passkeyUser) WebAuthnDisplayName() string {
	if u.user.Name != "" {
		return u.user.Name
	}
	return u.user.ID
}
func (u *passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// webauthnUser pairs a user with the credentials it has for rpID.
func webauthnUser(u *User, recs []passkeyRecord, rpID string) *passkeyUser {
	pu := &passkeyUser{user: u}
	for _, rec := range recs {
		if rec.RPID == rpID {
			pu.creds = append(pu.creds, rec.Credential)
		}
	}
	return pu
}

// passkeyChallenge is one begun ceremony, kept in the store under its
// challenge until it is finished (once) or expires.
type passkeyChallenge struct {
	// Purpose is "register", "login" or "invite".
	Purpose string `json:"purpose"`
	// User and SID bind a registration to who asked for it.
	User string `json:"user,omitempty"`
	SID  string `json:"sid,omitempty"`
	// Invite is the invitation code a registration redeems.
	Invite  string               `json:"invite,omitempty"`
	Expires time.Time            `json:"expires"`
	Session webauthn.SessionData `json:"session"`
}

func (ta *TokenAuth) putChallenge(ctx context.Context, ch passkeyChallenge) error {
	ch.Expires = ta.now().Add(passkeyChallengeTTL)
	data, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	return ta.realm.store.PutTemp(ctx, passkeyChallengePrefix+ch.Session.Challenge, data, passkeyChallengeTTL)
}

// errPasskeyRefused is why a ceremony's answer is refused; the details
// go to the log, never to the client.
var errPasskeyRefused = errors.New("passkey refused")

// takeChallenge consumes the ceremony a response answers: found once,
// never again, and only before it expires, for the purpose it began for.
func (ta *TokenAuth) takeChallenge(ctx context.Context, challenge, purpose string) (*passkeyChallenge, error) {
	if challenge == "" {
		return nil, fmt.Errorf("%w: no challenge", errPasskeyRefused)
	}
	data, found, err := ta.realm.store.TakeTemp(ctx, passkeyChallengePrefix+challenge)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: unknown, used or expired challenge", errPasskeyRefused)
	}
	var ch passkeyChallenge
	if err := json.Unmarshal(data, &ch); err != nil {
		return nil, fmt.Errorf("%w: unreadable challenge: %v", errPasskeyRefused, err)
	}
	if !ta.now().Before(ch.Expires) {
		return nil, fmt.Errorf("%w: expired challenge", errPasskeyRefused)
	}
	if ch.Purpose != purpose {
		return nil, fmt.Errorf("%w: challenge of a %s ceremony", errPasskeyRefused, ch.Purpose)
	}
	return &ch, nil
}

// servePasskeyEndpoint answers the passkey routes under the endpoint;
// handled is false for everything else.
func (ta *TokenAuth) servePasskeyEndpoint(w http.ResponseWriter, r *http.Request, sub string) (handled bool, err error) {
	if !ta.passkeysOn() {
		return false, nil
	}
	switch {
	case sub == passkeyScriptPath:
		return true, servePasskeyScript(w, r)
	case sub == "/passkeys/register/options" && r.Method == http.MethodPost:
		return true, ta.handleRegisterOptions(w, r)
	case sub == "/passkeys/register" && r.Method == http.MethodPost:
		return true, ta.handleRegister(w, r)
	case sub == "/passkeys/login/options" && r.Method == http.MethodPost:
		return true, ta.handleLoginOptions(w, r)
	case sub == "/passkeys" && r.Method == http.MethodGet:
		return true, ta.handleListPasskeys(w, r)
	case strings.HasPrefix(sub, "/passkeys/") && r.Method == http.MethodDelete:
		return true, ta.handleDeletePasskey(w, r, strings.TrimPrefix(sub, "/passkeys/"))
	case strings.HasPrefix(sub, "/invite/"):
		return true, ta.serveInvite(w, r, strings.TrimPrefix(sub, "/invite/")) // passkeys_invite.go
	case sub == "/passkeys" || strings.HasPrefix(sub, "/passkeys/"):
		w.Header().Set("Allow", "POST")
		return true, writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	}
	return false, nil
}

//go:embed passkeys.js
var passkeyScript []byte

// passkeyScriptPath is where, under the endpoint, the pages' script is.
const passkeyScriptPath = "/passkeys.js"

// passkeyScriptETag lets browsers keep the script and ask if it changed.
var passkeyScriptETag = fmt.Sprintf(`"%x"`, sha256.Sum256(passkeyScript))

// servePasskeyScript answers GET {endpoint}/passkeys.js.
func servePasskeyScript(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", passkeyScriptETag)
	http.ServeContent(w, r, "passkeys.js", time.Time{}, bytes.NewReader(passkeyScript))
	return nil
}

// warnPasskeyOnlyUsers says when users without a password cannot sign in
// at all, because passkeys are off.
func (ta *TokenAuth) warnPasskeyOnlyUsers() {
	if ta.passkeysOn() {
		return
	}
	for id, u := range ta.users.users().byID {
		if u.Password == "" {
			ta.logger.Warn("user has no password and passkeys are off: they cannot sign in", zap.String("user", id))
		}
	}
}

// handleRegisterOptions answers POST {endpoint}/passkeys/register/options
// for a signed-in user: the options for navigator.credentials.create,
// listing the user's passkeys so the same authenticator is not added twice.
func (ta *TokenAuth) handleRegisterOptions(w http.ResponseWriter, r *http.Request) error {
	claims, user, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	creation, err := ta.beginRegistration(r, user, passkeyChallenge{Purpose: "register", User: user.ID, SID: claims.SID})
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, creation)
}

// beginRegistration starts a registration ceremony for user, bound as ch says.
func (ta *TokenAuth) beginRegistration(r *http.Request, user *User, ch passkeyChallenge) (*protocol.CredentialCreation, error) {
	if len(user.ID) > 64 {
		return nil, newAPIError(http.StatusBadRequest, "Passkeys need a user id of at most 64 bytes")
	}
	rp, err := ta.relyingParty(r)
	if err != nil {
		return nil, err
	}
	recs, err := ta.passkeys(r.Context(), user.ID)
	if err != nil {
		return nil, err
	}
	pu := webauthnUser(user, recs, rp.Config.RPID)
	creation, session, err := rp.BeginRegistration(pu,
		webauthn.WithExclusions(webauthn.Credentials(pu.creds).CredentialDescriptors()),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	if err != nil {
		return nil, fmt.Errorf("beginning passkey registration: %w", err)
	}
	ch.Session = *session
	if err := ta.putChallenge(r.Context(), ch); err != nil {
		return nil, err
	}
	return creation, nil
}

// registerRequest is the body of POST {endpoint}/passkeys/register.
type registerRequest struct {
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`
}

// passkeyInfo is a passkey as the JSON API shows it.
type passkeyInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Created  string `json:"created"`
	LastUsed string `json:"last_used,omitempty"`
}

func (rec passkeyRecord) info() passkeyInfo {
	out := passkeyInfo{ID: passkeyID(rec.Credential.ID), Name: rec.Name, Created: rec.Created.UTC().Format(time.RFC3339)}
	if !rec.LastUsed.IsZero() {
		out.LastUsed = rec.LastUsed.UTC().Format(time.RFC3339)
	}
	return out
}

// handleRegister answers POST {endpoint}/passkeys/register: verifies the
// new credential against the ceremony this user and session began, and
// stores it. 201 {"id","name","created"}.
func (ta *TokenAuth) handleRegister(w http.ResponseWriter, r *http.Request) error {
	claims, user, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	var req registerRequest
	if err := readJSONBody(w, r, &req); err != nil {
		return ta.answerError(w, r, err)
	}
	rec, err := ta.finishRegistration(r, req.Credential, req.Name, "register", func(ch *passkeyChallenge) (*User, error) {
		if ch.User != user.ID || ch.SID != claims.SID {
			return nil, fmt.Errorf("%w: challenge of another user or session", errPasskeyRefused)
		}
		return user, nil
	}, nil)
	if err != nil {
		return ta.answerError(w, r, ta.registrationError(r, user.ID, err))
	}
	return writeJSON(w, http.StatusCreated, rec.info())
}

// registrationError logs why a registration was refused and answers 400;
// store faults pass through.
func (ta *TokenAuth) registrationError(r *http.Request, user string, err error) error {
	if !errors.Is(err, errPasskeyRefused) {
		return err
	}
	ta.logger.Info("passkey registration refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user), zap.String("reason", err.Error()))
	return newAPIError(http.StatusBadRequest, "The passkey could not be registered; please try again")
}

// finishRegistration verifies a registration response against the
// ceremony it answers (owner says whose it is, or refuses it) and stores
// the new passkey; redeem, unless nil, must agree first (an invitation is
// used up only by a passkey that passed).
func (ta *TokenAuth) finishRegistration(r *http.Request, raw json.RawMessage, name, purpose string,
	owner func(*passkeyChallenge) (*User, error), redeem func() error) (*passkeyRecord, error) {
	if len(raw) == 0 {
		return nil, newAPIError(http.StatusBadRequest, "credential is required")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", errPasskeyRefused, protocolDetail(err))
	}
	ch, err := ta.takeChallenge(r.Context(), parsed.Response.CollectedClientData.Challenge, purpose)
	if err != nil {
		return nil, err
	}
	user, err := owner(ch)
	if err != nil {
		return nil, err
	}
	rp, err := ta.relyingParty(r)
	if err != nil {
		return nil, err
	}
	if ch.Session.RelyingPartyID != rp.Config.RPID {
		return nil, fmt.Errorf("%w: ceremony begun for another RP ID", errPasskeyRefused)
	}
	recs, err := ta.passkeys(r.Context(), user.ID)
	if err != nil {
		return nil, err
	}
	cred, err := rp.CreateCredential(webauthnUser(user, recs, rp.Config.RPID), ch.Session, parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", errPasskeyRefused, protocolDetail(err))
	}
	for _, rec := range recs {
		if passkeyID(rec.Credential.ID) == passkeyID(cred.ID) {
			return nil, fmt.Errorf("%w: passkey already registered", errPasskeyRefused)
		}
	}
	if redeem != nil {
		if err := redeem(); err != nil {
			return nil, err
		}
	}
	rec := passkeyRecord{Name: passkeyName(name), Created: ta.now().UTC(), RPID: rp.Config.RPID, Credential: *cred}
	if err := ta.savePasskey(r.Context(), user.ID, rec); err != nil {
		return nil, err
	}
	ta.logger.Info("passkey registered", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("passkey", passkeyID(cred.ID)), zap.String("rp_id", rec.RPID))
	return &rec, nil
}

// passkeyName cleans a name given to a passkey: printable, bounded,
// "Passkey" when none.
func passkeyName(name string) string {
	name = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, strings.TrimSpace(name))
	if runes := []rune(name); len(runes) > maxPasskeyNameLength {
		name = string(runes[:maxPasskeyNameLength])
	}
	if name == "" {
		return "Passkey"
	}
	return name
}

// protocolDetail is the library's explanation of a refusal, for logs.
func protocolDetail(err error) string {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		if perr.DevInfo != "" {
			return perr.Details + ": " + perr.DevInfo
		}
		return perr.Details
	}
	return err.Error()
}

// handleLoginOptions answers POST {endpoint}/passkeys/login/options: the
// options for navigator.credentials.get, with no allowCredentials (the
// authenticator offers the passkeys it has for this site).
func (ta *TokenAuth) handleLoginOptions(w http.ResponseWriter, r *http.Request) error {
	// a banned client gets no challenges to fill the store with
	if err := ta.checkIPBan(r.Context(), clientIP(r)); err != nil {
		return ta.answerError(w, r, err)
	}
	rp, err := ta.relyingParty(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	assertion, session, err := rp.BeginDiscoverableLogin(webauthn.WithUserVerification(ta.Passkeys.userVerification()))
	if err != nil {
		return ta.answerError(w, r, fmt.Errorf("beginning passkey login: %w", err))
	}
	if err := ta.putChallenge(r.Context(), passkeyChallenge{Purpose: "login", Session: *session}); err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, assertion)
}

// passkeyLogin signs in with a passkey (`{"strategy":"passkey"}`), through
// the same throttle, sessions and answers as a password login. Every
// refusal is 401 Invalid login and counts against the client IP.
func (ta *TokenAuth) passkeyLogin(r *http.Request, raw json.RawMessage) (*authResult, error) {
	if !ta.passkeysOn() {
		return nil, newAPIError(http.StatusUnauthorized, "Invalid authentication information (no valid strategy set)")
	}
	ip := clientIP(r)
	if err := ta.checkIPBan(r.Context(), ip); err != nil { // throttle.go
		ta.countLoginMethod("passkey", loginErrorResult(err))
		return nil, err
	}
	user, rec, verified, err := ta.verifyPasskeyLogin(r, raw)
	if errors.Is(err, errPasskeyRefused) {
		ta.logger.Info("login failed", zap.String("client_ip", ip), zap.String("realm", ta.Realm),
			zap.String("method", "passkey"), zap.String("reason", err.Error()))
		ta.countLoginMethod("passkey", "failure")
		if err := ta.countIPFailure(r.Context(), ip, "passkey"); err != nil { // throttle.go
			return nil, err
		}
		return nil, errInvalidLogin()
	}
	if err != nil {
		ta.countLoginMethod("passkey", "error")
		return nil, err
	}
	amr := []string{"hwk"}
	if verified { // the authenticator checked who holds it: a second factor
		amr = append(amr, "mfa")
	}
	session, err := ta.openSession(r, user, amr)
	if err != nil {
		ta.countLoginMethod("passkey", "error")
		return nil, err
	}
	ta.countLoginMethod("passkey", "success")
	ta.logger.Info("login succeeded", zap.String("client_ip", ip), zap.String("realm", ta.Realm), zap.String("user", user.ID),
		zap.String("sid", session.ID), zap.String("method", "passkey"), zap.String("passkey", passkeyID(rec.Credential.ID)))
	return ta.issuePair(user, session, "passkey")
}

// passkeyStepUp adds a passkey to a signed-in one-factor session (the
// step-up page).
func (ta *TokenAuth) passkeyStepUp(r *http.Request, user *User, sid string, raw json.RawMessage) (*authResult, error) {
	if err := ta.checkPasskeyFactor(r, user, raw); err != nil {
		return nil, err
	}
	return ta.stepUpSession(r, user, sid, "passkey", "hwk", amrMFA)
}

// checkPasskeyFactor checks a passkey given as user's second factor (the
// step-up page, the second step of a password login): an assertion
// answering the login ceremony's options, by one of user's own passkeys,
// with user verification (a passkey without it is one factor). A refusal
// counts against the client IP, as a failed passkey login does, and
// answers 401 Invalid login.
func (ta *TokenAuth) checkPasskeyFactor(r *http.Request, user *User, raw json.RawMessage) error {
	ip := clientIP(r)
	if err := ta.checkIPBan(r.Context(), ip); err != nil {
		return err
	}
	owner, rec, verified, err := ta.verifyPasskeyLogin(r, raw)
	switch {
	case err != nil:
	case owner.ID != user.ID:
		err = fmt.Errorf("%w: a passkey of another user", errPasskeyRefused)
	case !verified:
		err = fmt.Errorf("%w: no user verification", errPasskeyRefused)
	}
	if errors.Is(err, errPasskeyRefused) {
		ta.logger.Info("passkey as second factor refused", zap.String("client_ip", ip), zap.String("realm", ta.Realm),
			zap.String("user", user.ID), zap.String("reason", err.Error()))
		ta.countSecondFactor("passkey", "failure")
		if err := ta.countIPFailure(r.Context(), ip, "passkey"); err != nil {
			return err
		}
		return errInvalidLogin()
	}
	if err != nil {
		return err
	}
	ta.countSecondFactor("passkey", "success")
	ta.logger.Info("second factor accepted", zap.String("client_ip", ip), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("method", "passkey"), zap.String("passkey", passkeyID(rec.Credential.ID)))
	return nil
}

// verifyPasskeyLogin checks an assertion against the login ceremony it
// answers and the passkey it names, and records the passkey's use.
// verified says whether the authenticator verified its user (UV flag).
func (ta *TokenAuth) verifyPasskeyLogin(r *http.Request, raw json.RawMessage) (user *User, rec *passkeyRecord, verified bool, err error) {
	if len(raw) == 0 {
		return nil, nil, false, fmt.Errorf("%w: no credential", errPasskeyRefused)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(raw)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: %s", errPasskeyRefused, protocolDetail(err))
	}
	ch, err := ta.takeChallenge(r.Context(), parsed.Response.CollectedClientData.Challenge, "login")
	if err != nil {
		return nil, nil, false, err
	}
	rp, err := ta.relyingParty(r)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: %v", errPasskeyRefused, err)
	}
	if ch.Session.RelyingPartyID != rp.Config.RPID {
		return nil, nil, false, fmt.Errorf("%w: ceremony begun for another RP ID", errPasskeyRefused)
	}
	var (
		recs     []passkeyRecord
		storeErr error
	)
	lookup := func(_, userHandle []byte) (webauthn.User, error) {
		if user = ta.users.byID(string(userHandle)); user == nil {
			return nil, errors.New("no such user")
		}
		if recs, storeErr = ta.passkeys(r.Context(), user.ID); storeErr != nil {
			return nil, storeErr
		}
		return webauthnUser(user, recs, rp.Config.RPID), nil
	}
	_, cred, err := rp.ValidatePasskeyLogin(lookup, ch.Session, parsed)
	if storeErr != nil {
		return nil, nil, false, storeErr
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: %s", errPasskeyRefused, protocolDetail(err))
	}
	rec = recordOf(recs, cred.ID)
	if cred.Authenticator.CloneWarning {
		ta.logger.Warn("passkey sign counter went backwards: a cloned authenticator? sign-in refused",
			zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("user", user.ID),
			zap.String("passkey", passkeyID(cred.ID)), zap.Uint32("stored_count", rec.Credential.Authenticator.SignCount),
			zap.Uint32("presented_count", parsed.Response.AuthenticatorData.Counter))
		return nil, nil, false, fmt.Errorf("%w: sign counter went backwards", errPasskeyRefused)
	}
	rec.Credential = *cred
	rec.LastUsed = ta.now().UTC()
	if err := ta.savePasskey(r.Context(), user.ID, *rec); err != nil {
		return nil, nil, false, err
	}
	return user, rec, parsed.Response.AuthenticatorData.Flags.HasUserVerified(), nil
}

// recordOf finds the record of a credential (the library found it there).
func recordOf(recs []passkeyRecord, id []byte) *passkeyRecord {
	for i := range recs {
		if passkeyID(recs[i].Credential.ID) == passkeyID(id) {
			return &recs[i]
		}
	}
	return &passkeyRecord{}
}

// handleListPasskeys answers GET {endpoint}/passkeys: the signed-in
// user's passkeys.
func (ta *TokenAuth) handleListPasskeys(w http.ResponseWriter, r *http.Request) error {
	_, user, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	recs, err := ta.passkeys(r.Context(), user.ID)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	out := make([]passkeyInfo, 0, len(recs))
	for _, rec := range recs {
		out = append(out, rec.info())
	}
	return writeJSON(w, http.StatusOK, map[string]any{"passkeys": out})
}

// handleDeletePasskey answers DELETE {endpoint}/passkeys/<id>[?force=true].
// The last passkey of a passkey-only account is removed only with force:
// without it the person can no longer sign in.
func (ta *TokenAuth) handleDeletePasskey(w http.ResponseWriter, r *http.Request, id string) error {
	_, user, err := ta.signedInUser(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	force := r.URL.Query().Get("force") == "true"
	if err := ta.removePasskey(r, user, id, force); err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"removed": id})
}

// errLastPasskey refuses to remove the only way a passkey-only user signs in.
func errLastPasskey() *apiError {
	e := newAPIError(http.StatusConflict, "This is the account's last passkey and it has no password: removing it locks the account out. Send force=true to remove it anyway")
	e.Data = map[string]string{"reason": "last_passkey"}
	return e
}

// removePasskey deletes one of user's passkeys (404 when user has no such
// passkey).
func (ta *TokenAuth) removePasskey(r *http.Request, user *User, id string, force bool) error {
	recs, err := ta.passkeys(r.Context(), user.ID)
	if err != nil {
		return err
	}
	found := false
	for _, rec := range recs {
		found = found || passkeyID(rec.Credential.ID) == id
	}
	if !found {
		return newAPIError(http.StatusNotFound, "No such passkey")
	}
	if len(recs) == 1 && user.Password == "" && !force {
		return errLastPasskey()
	}
	if err := ta.realm.store.DeleteRecord(r.Context(), passkeyKind, user.ID, id); err != nil {
		return err
	}
	ta.logger.Info("passkey removed", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", user.ID), zap.String("passkey", id))
	return nil
}

// readJSONBody reads a JSON object body of at most maxBodySize bytes.
func readJSONBody(w http.ResponseWriter, r *http.Request, dst any) error {
	if contentType(r) != "application/json" {
		return newAPIError(http.StatusUnsupportedMediaType, "Send application/json")
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return newAPIError(http.StatusBadRequest, "Malformed JSON body: "+err.Error())
	}
	return nil
}
