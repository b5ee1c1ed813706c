package tokenauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// DPoP (RFC 9449) binds a session and its access tokens to a key pair the
// client holds: a login or refresh carrying a proof (a JWT signed by the
// client's private key, with the public key in its header) gets tokens
// carrying the key's RFC 7638 thumbprint (`cnf.jkt`), and from then on
// every refresh and every guarded request must come with a fresh proof by
// that key. A thief who copies a token but not the private key gets
// nothing. This file verifies proofs (§4.3); the endpoint (binding) and
// the guard (bound tokens) call it.

// DPoP modes.
const (
	dpopOff      = "off"      // proofs are ignored, bound tokens refused
	dpopOptional = "optional" // clients with a proof get bound tokens, others plain ones
	dpopRequired = "required" // every login, refresh and guarded request needs a proof
)

// defaultDPoPWindow is how far a proof's iat may be from the server's
// clock (RFC 9449 §11.1 leaves it to the server; a minute is common).
const defaultDPoPWindow = 60 * time.Second

// maxProofSize bounds the DPoP header parsed at all: a proof with an RSA
// 4096 key is about 1.2 KiB.
const maxProofSize = 4 << 10

// maxProofJTI bounds the jti kept in the replay cache.
const maxProofJTI = 256

// RSA keys of proofs: at least 2048 bits (RFC 8725 §3.5 and NIST), at most
// 4096, so that a proof cannot make the server verify a huge modulus.
const (
	minProofRSABits = 2048
	maxProofRSABits = 4096
)

// dpopAlgs are the proof algorithms accepted, as the `algs` of a DPoP
// challenge lists them (§7.1). Ed25519 is RFC 9864's name for EdDSA with
// that curve, also accepted.
const dpopAlgs = "ES256 EdDSA RS256"

var dpopValidMethods = []string{"ES256", "EdDSA", "Ed25519", "RS256"}

// signingMethodEd25519 is golang-jwt's EdDSA under RFC 9864's fully
// specified name, so that proofs with `alg: Ed25519` verify. Registering
// it changes nothing for this plugin's own tokens: their algorithm is
// pinned per key (keyFor), and no key of ours is called Ed25519.
type signingMethodEd25519 struct{ *jwt.SigningMethodEd25519 }

func (signingMethodEd25519) Alg() string { return "Ed25519" }

func init() {
	jwt.RegisterSigningMethod("Ed25519", func() jwt.SigningMethod {
		return signingMethodEd25519{jwt.SigningMethodEdDSA}
	})
}

// DPoPConfig configures sender-constrained tokens (RFC 9449).
type DPoPConfig struct {
	// Mode is `off` (proofs ignored; a token bound earlier is refused),
	// `optional` (a login or refresh with a DPoP proof gets tokens bound to
	// the client's key, without one plain bearer tokens) or `required`
	// (logins and refreshes without a proof are refused with 400, and the
	// guard refuses tokens that are not bound). Default: optional.
	Mode string `json:"mode,omitempty"`

	// IATWindow is how far a proof's `iat` may lie from this server's clock,
	// in the past or the future; proofs are remembered (by `jti`, in the
	// realm's store, so shared through Redis with `store redis`) for as long
	// as they would be accepted, so each is used once. Default: 60s.
	IATWindow caddy.Duration `json:"iat_window,omitempty"`

	// Nonce turns on server-provided nonces (RFC 9449 §8): every proof must
	// carry a nonce this realm issued in the last one to two iat_windows.
	// Answers of the endpoint, and of guarded requests that use DPoP, carry
	// a fresh one in the DPoP-Nonce header; a proof without a current nonce
	// is answered 400 `use_dpop_nonce` at the endpoint and 401 with
	// `WWW-Authenticate: DPoP error="use_dpop_nonce"` at a guarded request,
	// both with a nonce to retry with. Nonces are signed with a key kept in
	// Caddy's storage (generated once per realm), so instances sharing the
	// storage accept each other's. Default: off.
	Nonce bool `json:"nonce,omitempty"`
}

// resolved fills the defaults of a possibly absent config.
func (c *DPoPConfig) resolved() DPoPConfig {
	out := DPoPConfig{}
	if c != nil {
		out = *c
	}
	if out.Mode == "" {
		out.Mode = dpopOptional
	}
	if out.IATWindow == 0 {
		out.IATWindow = caddy.Duration(defaultDPoPWindow)
	}
	return out
}

func (c DPoPConfig) validate() error {
	switch c.Mode {
	case dpopOff, dpopOptional, dpopRequired:
	default:
		return fmt.Errorf("dpop: mode must be off, optional or required, got %q", c.Mode)
	}
	if c.IATWindow <= 0 {
		return fmt.Errorf("dpop: iat_window must be positive")
	}
	return nil
}

// replayCache is what proof verification needs of the realm's KV: to
// record a jti once (kv.go).
type replayCache interface {
	ClaimTemp(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// dpopVerifier checks the proofs of one handler.
type dpopVerifier struct {
	mode   string
	window time.Duration
	replay replayCache
	now    func() time.Time
	parser *jwt.Parser
	nonces *nonceSource // dpop_nonce.go: nil without `nonce`
}

func newDPoPVerifier(cfg DPoPConfig, replay replayCache, now func() time.Time) *dpopVerifier {
	return &dpopVerifier{
		mode:   cfg.Mode,
		window: time.Duration(cfg.IATWindow),
		replay: replay,
		now:    now,
		// The claims are checked by verifyProof (iat both ways, htm, htu,
		// jti, ath); golang-jwt checks the structure and the signature.
		parser: jwt.NewParser(jwt.WithValidMethods(dpopValidMethods), jwt.WithoutClaimsValidation(), jwt.WithStrictDecoding()),
	}
}

// on says whether proofs are looked at (a nil verifier: a handler built
// by hand in a test, never provisioned, is "off").
func (v *dpopVerifier) on() bool { return v != nil && v.mode != dpopOff }

// required says whether every login, refresh and token needs a proof.
func (v *dpopVerifier) required() bool { return v != nil && v.mode == dpopRequired }

// Errors of proof verification. errNoProof: the request has no DPoP
// header at all (the caller decides whether that is allowed); errUseNonce
// (dpop_nonce.go): a good proof without a current server nonce; every
// other refusal wraps errBadProof with the reason, for logs and tests.
var (
	errNoProof  = errors.New("no DPoP proof")
	errBadProof = errors.New("invalid DPoP proof")
)

func badProof(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadProof, fmt.Sprintf(format, args...))
}

// proofClaims are the claims of a DPoP proof (RFC 9449 §4.2).
type proofClaims struct {
	JTI   string           `json:"jti"`
	HTM   string           `json:"htm"`
	HTU   string           `json:"htu"`
	IAT   *jwt.NumericDate `json:"iat"`
	ATH   string           `json:"ath,omitempty"`
	Nonce string           `json:"nonce,omitempty"`
}

// proofClaims satisfies jwt.Claims; the parser never validates them
// (WithoutClaimsValidation), verifyProof does.
func (proofClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (proofClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (proofClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (proofClaims) GetIssuer() (string, error)                   { return "", nil }
func (proofClaims) GetSubject() (string, error)                  { return "", nil }
func (proofClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// verifyProof checks the request's DPoP proof as RFC 9449 §4.3 says and
// returns the thumbprint of its key. accessToken is the token presented
// with it at a resource (its hash must be the proof's ath), "" at the
// endpoint. A proof that passes is recorded (its jti) and never accepted
// again. Errors: errNoProof, errBadProof, or a store failure (wrapping
// ErrStoreUnavailable).
func (v *dpopVerifier) verifyProof(r *http.Request, accessToken string) (jkt string, err error) {
	raw, err := proofHeader(r)
	if err != nil {
		return "", err
	}
	var claims proofClaims
	var key *jose.JSONWebKey
	_, err = v.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		var keyErr error
		key, keyErr = proofKey(t)
		if keyErr != nil {
			return nil, keyErr
		}
		return key.Key, nil
	})
	if err != nil {
		return "", badProof("%v", err)
	}
	now := v.now()
	if err := v.checkClaims(r, &claims, accessToken, now); err != nil {
		return "", err
	}
	if err := v.checkNonce(claims.Nonce); err != nil {
		return "", err
	}
	thumb, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", badProof("thumbprint: %v", err)
	}
	// Recorded last, so that refused proofs never fill the cache. Kept as
	// long as the proof would be accepted: until its iat leaves the window.
	ttl := claims.IAT.Add(v.window).Sub(now) + time.Second
	first, err := v.replay.ClaimTemp(r.Context(), "dpop:jti:"+claims.JTI, ttl)
	if err != nil {
		return "", err
	}
	if !first {
		return "", badProof("jti %q used before", claims.JTI)
	}
	return base64.RawURLEncoding.EncodeToString(thumb), nil
}

// proofHeader returns the request's one DPoP header.
func proofHeader(r *http.Request) (string, error) {
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return "", errNoProof
	case len(values) > 1:
		return "", badProof("%d DPoP headers", len(values))
	case len(values[0]) > maxProofSize:
		return "", badProof("larger than %d bytes", maxProofSize)
	}
	return values[0], nil
}

// privateJWKMembers are the JWK members of private or symmetric keys
// (RFC 7518 §6): a proof's jwk must hold none of them. x5c and x5u are
// refused too: a proof's key is the jwk itself, and certificates are not
// parsed from untrusted headers.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "x5c", "x5u"}

// proofKey checks a proof's header (typ, jwk) and returns its public key,
// of a kind that matches the alg: P-256 for ES256, Ed25519 for EdDSA and
// Ed25519, RSA of 2048 to 4096 bits for RS256. golang-jwt has already
// checked that the alg is one of dpopValidMethods.
func proofKey(t *jwt.Token) (*jose.JSONWebKey, error) {
	if typ, _ := t.Header["typ"].(string); !typMatches(typ, "dpop+jwt") {
		return nil, fmt.Errorf("typ %q, want dpop+jwt", typ)
	}
	members, ok := t.Header["jwk"].(map[string]any)
	if !ok {
		return nil, errors.New("no jwk header")
	}
	for _, m := range privateJWKMembers {
		if _, present := members[m]; present {
			return nil, fmt.Errorf("jwk has a %q member (a private key, or a certificate)", m)
		}
	}
	data, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	key := new(jose.JSONWebKey)
	if err := key.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	if !key.IsPublic() {
		return nil, errors.New("jwk is not a public key")
	}
	if err := keyFitsAlg(key.Key, t.Method.Alg()); err != nil {
		return nil, err
	}
	return key, nil
}

func keyFitsAlg(key any, alg string) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if alg == "ES256" && k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PublicKey:
		if alg == "EdDSA" || alg == "Ed25519" {
			return nil
		}
	case *rsa.PublicKey:
		if alg == "RS256" {
			if bits := k.N.BitLen(); bits < minProofRSABits || bits > maxProofRSABits {
				return fmt.Errorf("RSA key of %d bits (want %d to %d)", bits, minProofRSABits, maxProofRSABits)
			}
			return nil
		}
	}
	return fmt.Errorf("jwk of type %T does not fit alg %s", key, alg)
}

// checkClaims checks what a proof says about the request: method, URL,
// time, jti and (at a resource) the access token's hash.
func (v *dpopVerifier) checkClaims(r *http.Request, c *proofClaims, accessToken string, now time.Time) error {
	if c.JTI == "" || len(c.JTI) > maxProofJTI {
		return badProof("jti missing or longer than %d bytes", maxProofJTI)
	}
	if c.HTM != r.Method {
		return badProof("htm %q for a %s request", c.HTM, r.Method)
	}
	proofURL, err := normalizeHTU(c.HTU)
	if err != nil {
		return badProof("htu %q: %v", c.HTU, err)
	}
	if want := requestHTU(r); proofURL != want {
		return badProof("htu %q for a request to %s", c.HTU, want)
	}
	if c.IAT == nil {
		return badProof("no iat")
	}
	if skew := now.Sub(c.IAT.Time); skew > v.window || skew < -v.window {
		return badProof("iat %s is %s from now (window %s)", c.IAT.Time.UTC().Format(time.RFC3339), skew.Round(time.Second), v.window)
	}
	if accessToken != "" {
		want := accessTokenHash(accessToken)
		if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(want)) != 1 {
			return badProof("ath is not the hash of the access token")
		}
	}
	return nil
}

// accessTokenHash is a proof's ath for a token: base64url(SHA-256(token)).
func accessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// normalizeHTU reduces an http(s) URL to what RFC 9449 §4.3 compares:
// scheme and host in lower case, without a default port, the path ("/"
// when empty) percent-decoded (RFC 3986 §6.2.2, §6.2.3); no query, no
// fragment.
func normalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", errors.New("not an http or https URL")
	}
	if u.Host == "" || u.User != nil {
		return "", errors.New("no host, or a user")
	}
	return htu(scheme, u.Host, u.Path), nil
}

// requestHTU is the request's URL as the client saw it, normalized like
// normalizeHTU: the scheme and host the client used (through a proxy in
// the server's trusted_proxies, what it says in X-Forwarded-Proto and
// X-Forwarded-Host; from anyone else those headers are ignored), and the
// path before any rewrite by the routes in front of this handler.
func requestHTU(r *http.Request) string {
	scheme := "http"
	if secureRequest(r) {
		scheme = "https"
	}
	host := r.Host
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if fwd := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Host"), ",")[0]); fwd != "" {
			host = fwd
		}
	}
	path := r.URL.Path
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		path = orig.URL.Path
	}
	return htu(scheme, host, path)
}

func htu(scheme, host, path string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil &&
		(scheme == "https" && port == "443" || scheme == "http" && port == "80") {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]" // IPv6
		}
	}
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

// Errors the endpoint and the guard answer refused proofs with.
func errDPoPProof(status int) *apiError {
	e := newAPIError(status, "Invalid DPoP proof")
	e.Data = map[string]string{"reason": "invalid_dpop_proof"}
	return e
}

// proofForEndpoint verifies the proof of a login or refresh: its key's
// thumbprint, "" when there is none and none is needed. A bad proof is 401
// invalid_dpop_proof; none at all is 400 with dpop required.
func (ta *TokenAuth) proofForEndpoint(r *http.Request) (string, error) {
	if !ta.dpop.on() {
		return "", nil
	}
	jkt, err := ta.dpop.verifyProof(r, "")
	switch {
	case err == nil:
		return jkt, nil
	case errors.Is(err, errNoProof) && ta.dpop.required():
		return "", errDPoPProof(http.StatusBadRequest)
	case errors.Is(err, errNoProof):
		return "", nil
	case errors.Is(err, errUseNonce):
		return "", errDPoPNonce()
	case errors.Is(err, errBadProof):
		ta.logger.Info("DPoP proof refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("path", r.URL.Path), zap.Error(err))
		return "", errDPoPProof(http.StatusUnauthorized)
	}
	return "", err // the store
}

// bindProof binds a session about to be created to the key of the
// request's DPoP proof (s.JKT), or leaves it unbound when the request has
// none and dpop is not required. Every sign-in path (password, passkey,
// identity provider) calls it, through openSession, before the session is
// stored; its error is the answer to the sign-in.
func (ta *TokenAuth) bindProof(r *http.Request, s *Session) error {
	jkt, err := ta.proofForEndpoint(r)
	if err != nil {
		return err
	}
	s.JKT = jkt
	return nil
}

// refreshProof checks a refresh's proof against the session's binding
// BEFORE the session rotates, so that a thief without the key changes
// nothing: a bound session needs a proof by its key, else 401
// invalid_dpop_proof and the session goes on. An unbound session with a
// proof becomes bound to it. It returns the key the new tokens are bound
// to ("" for none).
func (ta *TokenAuth) refreshProof(r *http.Request, sid string) (string, error) {
	jkt, err := ta.proofForEndpoint(r)
	if err != nil {
		return "", err
	}
	s, err := ta.realm.store.Get(r.Context(), sid)
	if errors.Is(err, ErrSessionNotFound) {
		return jkt, nil // Rotate refuses it
	}
	if err != nil {
		return "", err
	}
	switch {
	case s.JKT == jkt:
		return jkt, nil
	case s.JKT != "":
		ta.logger.Info("refresh refused: not proven by the session's DPoP key", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm),
			zap.String("user", s.User), zap.String("sid", sid), zap.Bool("proof", jkt != ""))
		return "", errDPoPProof(http.StatusUnauthorized)
	}
	// unbound, with a proof: bind it (unless a concurrent refresh just did, to another key)
	_, err = ta.realm.store.Update(r.Context(), sid, func(in *SignIn) error {
		if in.JKT != "" && in.JKT != jkt {
			return errDPoPProof(http.StatusUnauthorized)
		}
		in.JKT = jkt
		return nil
	})
	if errors.Is(err, ErrSessionNotFound) {
		return jkt, nil
	}
	return jkt, err
}

// dpopAccessToken returns the token of an `Authorization: DPoP <token>`
// header (RFC 9449 §7.1).
func dpopAccessToken(r *http.Request) (string, bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !found || !strings.EqualFold(scheme, "DPoP") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// tokenBinding decides whether an accepted access token may be used as it
// was presented (viaDPoP: with the DPoP scheme): a bound token only with
// the DPoP scheme and a proof by its key whose ath is its hash; a token
// with the DPoP scheme must be bound; with dpop required every token must.
// It returns the RFC 9449 §7.1 error code ("" when accepted), or a store
// failure.
func (ta *TokenAuth) tokenBinding(r *http.Request, raw string, claims *accessClaims, viaDPoP bool) (string, error) {
	bound := claims.boundKey()
	switch {
	case bound == "" && (viaDPoP || ta.dpop.required()):
		return "invalid_token", nil
	case bound == "":
		return "", nil
	case !viaDPoP || !ta.dpop.on():
		return "invalid_token", nil // a bound token as Bearer, from a cookie, or with dpop off
	}
	jkt, err := ta.dpop.verifyProof(r, raw)
	switch {
	case err == nil && jkt == bound:
		return "", nil
	case err == nil:
		err = badProof("signed by another key than the token's")
	case errors.Is(err, errUseNonce):
		return "use_dpop_nonce", nil
	case !errors.Is(err, errNoProof) && !errors.Is(err, errBadProof):
		return "", err // the store
	}
	ta.logger.Debug("DPoP proof refused", zap.String("client_ip", clientIP(r)), zap.String("realm", ta.Realm), zap.String("sid", claims.SID), zap.Error(err))
	return "invalid_dpop_proof", nil
}

// refuseDPoP answers 401 with a DPoP challenge (RFC 9449 §7.1).
func (ta *TokenAuth) refuseDPoP(w http.ResponseWriter, dpopError string) error {
	challenge := `DPoP algs="` + dpopAlgs + `"`
	if dpopError != "" {
		challenge = fmt.Sprintf("DPoP error=%q, algs=%q", dpopError, dpopAlgs)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	e := errNotAuthenticated()
	if dpopError != "" {
		e.Data = map[string]string{"reason": dpopError}
	}
	return writeError(w, e)
}

// boundTokenType is the token_type of an answer: "DPoP" for tokens bound
// to a key, "" (absent) for bearer tokens.
func boundTokenType(jkt string) string {
	if jkt == "" {
		return ""
	}
	return "DPoP"
}

// failureResult is the metric label of a failed sign-in or
// refresh: a refused DPoP proof, or a server fault.
func failureResult(err error) string {
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		if data, ok := apiErr.Data.(map[string]string); ok && (data["reason"] == "invalid_dpop_proof" || data["reason"] == "use_dpop_nonce") {
			return data["reason"]
		}
	}
	return "error"
}

// presentedAccessToken is accessToken (cookies.go) plus the DPoP scheme:
// the token of `Authorization: DPoP <token>` (viaDPoP), else the Bearer
// token or the access cookie.
func (ta *TokenAuth) presentedAccessToken(r *http.Request) (raw string, fromCookie, viaDPoP bool) {
	raw, fromCookie = ta.accessToken(r)
	if raw == "" || fromCookie { // a DPoP header is never taken for a Bearer one
		if token, ok := dpopAccessToken(r); ok {
			return token, false, true
		}
	}
	return raw, fromCookie, false
}

// endpointBinding is tokenBinding for the endpoint's own uses of an
// access token (logout, Feathers' reAuthenticate): a refusal is a 401
// with data.reason the DPoP error.
func (ta *TokenAuth) endpointBinding(r *http.Request, raw string, claims *accessClaims, viaDPoP bool) error {
	dpopError, err := ta.tokenBinding(r, raw, claims, viaDPoP)
	if err != nil || dpopError == "" {
		return err
	}
	e := errNotAuthenticated()
	e.Data = map[string]string{"reason": dpopError}
	return e
}
