package tokenauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// maxBodySize is the largest request body the endpoint reads.
const maxBodySize = 64 << 10

// maxBodyDrain is how much more of a too-large body is read (and
// discarded) so that the client can receive the 413.
const maxBodyDrain = 256 << 10

// authRequest is every field a POST to the endpoint may carry, in the
// shapes FeathersJS clients send.
type authRequest struct {
	Strategy     string `json:"strategy"`
	Email        string `json:"email"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	AccessToken  string `json:"accessToken"`
	Action       string `json:"action"`
	RefreshToken string `json:"refreshToken"`
	// refresh_token is the shape of the seed's refresh request.
	RefreshTokenSnake string `json:"refresh_token"`
	// The second step of a login with a second factor (mfa.go).
	MFAToken     string `json:"mfa_token"`
	Code         string `json:"code"`
	RecoveryCode string `json:"recovery_code"`
	// Credential is a passkey's AuthenticationResponseJSON (passkeys.go).
	Credential json.RawMessage `json:"credential"`
}

// refreshToken returns whichever refresh token field was sent.
func (a *authRequest) refreshToken() string {
	if a.RefreshToken != "" {
		return a.RefreshToken
	}
	return a.RefreshTokenSnake
}

// authResult is the answer to a successful authentication, as Feathers'
// authentication service gives it.
type authResult struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken,omitempty"`
	// TokenType is "DPoP" when the tokens are bound to the client's DPoP
	// key (RFC 9449 §5), absent for bearer tokens.
	TokenType      string         `json:"token_type,omitempty"`
	Authentication authInfo       `json:"authentication"`
	User           map[string]any `json:"user"`
	// sessionEnd is when the session stops being refreshable: the
	// lifetime of the browser's cookies.
	sessionEnd time.Time
}

type authInfo struct {
	Strategy    string          `json:"strategy"`
	AccessToken string          `json:"accessToken"`
	Payload     json.RawMessage `json:"payload"` // the access token's claims
}

// readBody reads a request body of at most maxBodySize bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodySize))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		// The connection is closed after the answer. Closing it on unread
		// data resets it, and a client still sending then loses the 413:
		// take in a bounded rest first, as net/http does for unread bodies.
		_, _ = io.CopyN(io.Discard, r.Body, maxBodyDrain)
		return nil, newAPIError(http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body larger than %d bytes", maxBodySize))
	}
	if err != nil {
		return nil, newAPIError(http.StatusBadRequest, "Could not read request body")
	}
	return body, nil
}

// decodeAuthRequest parses a JSON body strictly: one object whose fields
// are all strings.
func decodeAuthRequest(body []byte) (*authRequest, error) {
	var req authRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, newAPIError(http.StatusBadRequest, "Malformed JSON body: "+err.Error())
	}
	if dec.More() {
		return nil, newAPIError(http.StatusBadRequest, "Malformed JSON body: trailing data")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, newAPIError(http.StatusBadRequest, "Malformed JSON body: trailing data")
	}
	return &req, nil
}

// handlePost answers POST {endpoint}: login, re-authentication and refresh.
func (ta *TokenAuth) handlePost(w http.ResponseWriter, r *http.Request) error {
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if isFormContent(mediaType) && ta.cookiesEnabled() {
		return ta.handleFormLogin(w, r)
	}
	if mediaType != "application/json" {
		return writeError(w, newAPIError(http.StatusUnsupportedMediaType, "Send application/json"))
	}
	body, err := readBody(w, r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	req, err := decodeAuthRequest(body)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	result, err := ta.authenticate(r, req)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	return writeJSON(w, http.StatusCreated, result)
}

// authenticate carries out a parsed POST request.
func (ta *TokenAuth) authenticate(r *http.Request, req *authRequest) (*authResult, error) {
	switch {
	case req.Action == "refresh" || req.Strategy == "refresh":
		return ta.refresh(r, req.refreshToken())
	case req.Strategy == "local":
		return ta.login(r, req)
	case req.Strategy == "jwt":
		return ta.reauthenticate(r, req.AccessToken)
	case req.Strategy == "totp":
		return ta.completeSecondFactor(r, req.MFAToken, req.Code, req.RecoveryCode)
	case req.Strategy == "passkey" && req.MFAToken != "":
		return ta.completeWithPasskey(r, req.MFAToken, req.Credential) // mfa_passkey.go
	case req.Strategy == "passkey":
		return ta.passkeyLogin(r, req.Credential)
	default:
		return nil, newAPIError(http.StatusUnauthorized, "Invalid authentication information (no valid strategy set)")
	}
}

// login checks a password and opens a new session.
func (ta *TokenAuth) login(r *http.Request, req *authRequest) (*authResult, error) {
	loginName, isEmail := req.Username, false
	if req.Email != "" {
		loginName, isEmail = req.Email, true
	}
	user, err := ta.checkPassword(r, loginName, req.Password, isEmail)
	if err != nil {
		ta.countLogin(loginErrorResult(err))
		return nil, err
	}
	if user == nil {
		ta.countLogin("failure")
		return nil, errInvalidLogin()
	}
	if methods, err := ta.secondFactorMethods(r.Context(), user); err != nil {
		ta.countLogin("error")
		return nil, err
	} else if len(methods) > 0 {
		return nil, ta.beginSecondFactor(r, user, methods)
	}
	session, err := ta.openSession(r, user, []string{amrPwd})
	if err != nil {
		ta.countLogin(failureResult(err))
		return nil, err
	}
	ta.countLogin("success")
	ta.logger.Info("login succeeded", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("user", user.ID), zap.String("sid", session.ID))
	return ta.issuePair(user, session, "local")
}

// openSession starts a session for user, signed in by the methods amr
// names (RFC 8176: pwd, hwk, mfa, ...).
func (ta *TokenAuth) openSession(r *http.Request, user *User, amr []string) (Session, error) {
	return ta.openSessionWith(r, user, SignIn{AMR: amr})
}

// openSessionWith creates the session of every sign-in (password, passkey,
// identity provider): the same refresh rotation, reuse detection and
// revocation. signIn says how (its AuthTime is now). The session is bound
// to the key of the request's DPoP proof if it has one (bindProof, dpop.go).
func (ta *TokenAuth) openSessionWith(r *http.Request, user *User, signIn SignIn) (Session, error) {
	now := ta.now()
	s := Session{
		ID:         randomID(),
		User:       user.ID,
		Created:    now,
		LastUsed:   now,
		Expires:    now.Add(time.Duration(ta.SessionTTL)),
		Generation: 1,
		IdleTTL:    time.Duration(ta.IdleTTL),
		SignIn:     signIn,
	}
	if s.AuthTime.IsZero() { // a site session keeps its portal session's (sso.go)
		s.AuthTime = now
	}
	if err := ta.bindProof(r, &s); err != nil {
		return Session{}, err
	}
	return s, ta.realm.createSession(r.Context(), s, ta.maxLiveSessions()) // sessionlimit.go
}

// issuePair signs an access and a refresh token for the session's current
// generation.
func (ta *TokenAuth) issuePair(user *User, s Session, strategy string) (*authResult, error) {
	access, _, claimsJSON, err := ta.tokens.issueSessionAccessJSON(ta.withSSOClaims(withSignInClaims(user, s), s), s, s.deadline()) // idp.go, sso.go
	if err != nil {
		return nil, fmt.Errorf("signing access token: %w", err)
	}
	refresh, err := ta.tokens.issueRefresh(s)
	if err != nil {
		return nil, fmt.Errorf("signing refresh token: %w", err)
	}
	return &authResult{
		AccessToken:    access,
		RefreshToken:   refresh,
		Authentication: authInfo{Strategy: strategy, AccessToken: access, Payload: claimsJSON},
		TokenType:      boundTokenType(s.JKT),
		User:           user.publicUser(),
		sessionEnd:     s.deadline(),
	}, nil
}

// refresh rotates a session: the presented refresh token must be of the
// current generation (or the previous one within reuse_grace).
func (ta *TokenAuth) refresh(r *http.Request, raw string) (*authResult, error) {
	claims, err := ta.tokens.verifyRefresh(raw)
	if err != nil {
		ta.countRefresh("invalid")
		ta.logger.Info("refresh refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("reason", "invalid_token"))
		return nil, errNotAuthenticated()
	}
	user, err := ta.userByID(r.Context(), claims.Subject) // a realm user, or one admitted by an identity provider
	if err != nil {
		return nil, err
	}
	if user == nil {
		// The user is not in the list. That may be a removal, or a users
		// file read in the middle of a rewrite: nothing permanent is done
		// on one read. The refresh is refused before rotating, and the
		// session is not revoked: it works again if the user comes back,
		// and ends with its lifetime otherwise (the admin API revokes it
		// at once).
		ta.countRefresh("invalid")
		ta.logger.Info("refresh refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
			zap.String("user", claims.Subject), zap.String("sid", claims.SID), zap.String("reason", "user_removed"))
		return nil, errNotAuthenticated()
	}
	jkt, err := ta.refreshProof(r, claims.SID) // dpop.go: before rotating, so a refused proof changes nothing
	if err != nil {
		ta.countRefresh(failureResult(err))
		return nil, err
	}
	s, outcome, err := ta.realm.store.Rotate(r.Context(), claims.SID, claims.Generation, ta.now(), time.Duration(*ta.ReuseGrace))
	if errors.Is(err, ErrSessionNotFound) {
		ta.countRefresh("invalid")
		ta.logger.Info("refresh refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("sid", claims.SID), zap.String("reason", "unknown_session"))
		return nil, errNotAuthenticated()
	}
	if err != nil {
		ta.countRefresh("error")
		return nil, err
	}
	ta.countRefresh(outcome.String())
	switch outcome {
	case reused:
		if _, err := ta.realm.revoke(r.Context(), revocation{sid: s.ID, alreadyStored: true}); err != nil {
			return nil, err
		}
		ta.logger.Warn("refresh token reused; session revoked",
			zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
			zap.String("user", s.User), zap.String("sid", s.ID),
			zap.Uint64("presented_generation", claims.Generation), zap.Uint64("current_generation", s.Generation))
		return nil, errTokenReused()
	case refusedRevoked, refusedExpired:
		ta.logger.Info("refresh refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
			zap.String("user", s.User), zap.String("sid", s.ID), zap.String("reason", outcome.String()))
		return nil, errNotAuthenticated()
	}
	if s.JKT != jkt {
		// bound to another key by a refresh racing this one: nothing rotated for it
		ta.countRefresh("invalid_dpop_proof")
		return nil, errDPoPProof(http.StatusUnauthorized)
	}
	ta.logger.Info("session refreshed", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", s.User), zap.String("sid", s.ID), zap.String("outcome", outcome.String()))
	return ta.issuePair(user, s, "refresh")
}

// reauthenticate answers Feathers' reAuthenticate: the same access token
// back, with its payload and user, if it is still accepted.
func (ta *TokenAuth) reauthenticate(r *http.Request, raw string) (*authResult, error) {
	claims, user, err := ta.acceptAccess(r.Context(), raw)
	if err != nil {
		return nil, err
	}
	// a bound token in the body needs a proof by its key in the DPoP header
	if err := ta.endpointBinding(r, raw, claims, claims.CNF != nil); err != nil {
		return nil, err
	}
	return &authResult{
		AccessToken:    raw,
		Authentication: authInfo{Strategy: "jwt", AccessToken: raw, Payload: claims.payload()},
		User:           user.publicUser(),
	}, nil
}

// acceptAccess verifies an access token, checks its session is not revoked
// and its user still exists.
func (ta *TokenAuth) acceptAccess(ctx context.Context, raw string) (*accessClaims, *User, error) {
	claims, err := ta.tokens.verifyAccess(raw)
	if err != nil || ta.realm.revoked.has(claims.SID) {
		return nil, nil, errNotAuthenticated()
	}
	user, err := ta.userByID(ctx, claims.Subject)
	if err != nil {
		return nil, nil, err
	}
	if user == nil {
		return nil, nil, errNotAuthenticated()
	}
	return claims, user, nil
}

// endpointAccess is the access token a request to the endpoint carries,
// accepted, with its claims and user.
type endpointAccess struct {
	raw        string
	fromCookie bool
	claims     *accessClaims
	user       *User
}

// signedIn identifies the signed-in user of a request to the endpoint
// (logout, the account page, passkey and TOTP set-up) by its access token,
// under the guard's rules: a cookie counts only on a same-origin request,
// and a DPoP-bound token only as `Authorization: DPoP` with its proof.
func (ta *TokenAuth) signedIn(r *http.Request) (endpointAccess, error) {
	raw, fromCookie, viaDPoP := ta.presentedAccessToken(r)
	if fromCookie && !csrfAllowed(r) {
		return endpointAccess{}, errCrossOrigin()
	}
	claims, user, err := ta.acceptAccess(r.Context(), raw)
	if err == nil {
		err = ta.endpointBinding(r, raw, claims, viaDPoP)
	}
	if err != nil {
		return endpointAccess{}, err
	}
	return endpointAccess{raw: raw, fromCookie: fromCookie, claims: claims, user: user}, nil
}

// signedInUser is signedIn for callers that need only the claims and user.
func (ta *TokenAuth) signedInUser(r *http.Request) (*accessClaims, *User, error) {
	p, err := ta.signedIn(r)
	return p.claims, p.user, err
}

// handleLogout answers DELETE {endpoint}: revokes the session of the
// presented access token, or with ?scope=global every session of its user.
func (ta *TokenAuth) handleLogout(w http.ResponseWriter, r *http.Request) error {
	p, err := ta.signedIn(r)
	if err != nil {
		return ta.answerError(w, r, err)
	}
	raw, fromCookie, claims, user := p.raw, p.fromCookie, p.claims, p.user
	if r.URL.Query().Get("scope") == "global" {
		err = ta.revokeUser(r.Context(), claims.Subject)
	} else {
		err = ta.revokeSession(r.Context(), claims.SID)
	}
	if err != nil {
		return ta.answerError(w, r, err)
	}
	ta.logger.Info("logout", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
		zap.String("user", claims.Subject), zap.String("sid", claims.SID), zap.String("scope", r.URL.Query().Get("scope")))
	if fromCookie {
		ta.clearSessionCookies(w, r)
	}
	return writeJSON(w, http.StatusOK, &authResult{
		AccessToken:    raw,
		Authentication: authInfo{Strategy: "jwt", AccessToken: raw, Payload: claims.payload()},
		User:           user.publicUser(),
	})
}

// revokeSession revokes one session in the store and on every instance.
func (ta *TokenAuth) revokeSession(ctx context.Context, sid string) error {
	_, err := ta.realm.revoke(ctx, revocation{sid: sid})
	return err
}

// revokeUser revokes every session of a user.
func (ta *TokenAuth) revokeUser(ctx context.Context, user string) error {
	_, err := ta.realm.revoke(ctx, revocation{user: user})
	return err
}
