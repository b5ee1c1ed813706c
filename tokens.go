package tokenauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

// Token types, in the JWT `typ` header (RFC 9068 for access tokens). They
// keep a refresh token from being accepted as an access token and back.
const (
	typAccess  = "at+jwt"
	typRefresh = "rt+jwt"
)

// maxTokenSize bounds what is parsed at all; larger tokens are refused
// before any decoding.
const maxTokenSize = 8 << 10

// errInvalidToken is returned for every token that is not accepted; the
// wrapped reason is for logs and tests, never for clients.
var errInvalidToken = errors.New("invalid token")

// accessClaims are the claims of an access token. Custom claims of the user
// are carried at the top level and kept in Extra.
type accessClaims struct {
	jwt.RegisteredClaims
	SID   string   `json:"sid"`
	Email string   `json:"email,omitempty"`
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles,omitempty"`
	// CNF binds the token to a DPoP key (dpop.go); nil for bearer tokens.
	CNF *confirmation `json:"cnf,omitempty"`
	// AMR and AuthTime say how and when the session was signed in (RFC
	// 8176 method values, OIDC auth_time).
	AMR      []string         `json:"amr,omitempty"`
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	Extra    map[string]any   `json:"-"`

	// placeholders is the claims' Replacer provider (placeholder), made
	// once before the claims are shared (verifyAccessCached), so that a
	// request adding it allocates nothing.
	placeholders caddy.ReplacerFunc
	arena        claimsArena // storage for the decoded lists and dates (claims_decode.go)
}

// reservedClaims may not be set as custom claims: they carry the token's
// own meaning.
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true,
	"jti": true, "sid": true, "gen": true, "email": true, "name": true, "roles": true,
	"id": true, "typ": true, "amr": true, "auth_time": true, "cnf": true,
}

// confirmation is the `cnf` claim (RFC 7800) of a token bound to a DPoP
// key: the key's RFC 7638 thumbprint (RFC 9449 §6.1).
type confirmation struct {
	JKT string `json:"jkt"`
}

// boundKey is the thumbprint of the DPoP key the token is bound to, or "".
func (c *accessClaims) boundKey() string {
	if c.CNF == nil {
		return ""
	}
	return c.CNF.JKT
}

// accessClaimsFields is accessClaims without its JSON methods.
type accessClaimsFields accessClaims

func (c accessClaims) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(accessClaimsFields(c))
	if err != nil || len(c.Extra) == 0 {
		return base, err
	}
	extra, err := json.Marshal(c.Extra)
	if err != nil {
		return nil, err
	}
	// splice the two objects: {base...,extra...}
	return append(append(base[:len(base)-1], ','), extra[1:]...), nil
}

// UnmarshalJSON decodes the claims in one pass over the object
// (decodeAccessClaims): the fields above by name, everything else into
// Extra.
func (c *accessClaims) UnmarshalJSON(data []byte) error {
	return decodeAccessClaims(c, data)
}

// payload is the claims as a JSON object, for the `authentication.payload`
// of endpoint answers.
//
// The JSON is used as it is: decoding it into a map to encode it again in
// the answer cost a fifth of a rotation (BENCHMARKS.md).
func (c *accessClaims) payload() json.RawMessage {
	data, _ := json.Marshal(c)
	return data
}

// refreshClaims are the claims of a refresh token: which session, and which
// generation of it.
type refreshClaims struct {
	jwt.RegisteredClaims
	SID        string `json:"sid"`
	Generation uint64 `json:"gen"`
}

// tokenService issues and verifies a realm's tokens.
type tokenService struct {
	keys      *keyRing
	issuer    string
	audience  string
	accessTTL time.Duration
	parser    *jwt.Parser
	now       func() time.Time
	cache     *tokenCache // verified access tokens; nil: none

	// parserOptions build both parser and validator, so that the HS256
	// fast path (fastVerifyAccess) checks claims exactly as the parser does.
	parserOptions []jwt.ParserOption
	validator     *jwt.Validator
}

func newTokenService(keys *keyRing, issuer, audience string, accessTTL time.Duration) *tokenService {
	ts := &tokenService{keys: keys, issuer: issuer, audience: audience, accessTTL: accessTTL, now: time.Now}
	ts.parserOptions = []jwt.ParserOption{
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return ts.now() }),
		// Canonical base64url only: otherwise several strings (differing in
		// a signature's unused trailing bits) are the same valid token.
		jwt.WithStrictDecoding(),
	}
	ts.parser = jwt.NewParser(ts.parserOptions...)
	ts.validator = jwt.NewValidator(ts.parserOptions...)
	return ts
}

// randomID returns 128 random bits, URL-safe.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// issueAccess signs an access token for u in session sid. It never outlives
// the session.
func (ts *tokenService) issueAccess(u *User, sid string, sessionEnd time.Time) (string, *accessClaims, error) {
	return ts.issueSessionAccess(u, Session{ID: sid}, sessionEnd)
}

// issueSessionAccess signs an access token for u in session s, carrying
// how and when s was signed in (amr, auth_time) and, for a session bound
// to a DPoP key, its thumbprint (cnf.jkt, RFC 9449 §6.1).
func (ts *tokenService) issueSessionAccess(u *User, s Session, sessionEnd time.Time) (string, *accessClaims, error) {
	tok, claims, _, err := ts.issueSessionAccessJSON(u, s, sessionEnd)
	return tok, claims, err
}

// issueSessionAccessJSON is issueSessionAccess that also returns the
// claims as signed, as JSON (an answer's payload: marshalled once).
func (ts *tokenService) issueSessionAccessJSON(u *User, s Session, sessionEnd time.Time) (string, *accessClaims, json.RawMessage, error) {
	now := ts.now()
	exp := now.Add(ts.accessTTL)
	if sessionEnd.Before(exp) {
		exp = sessionEnd
	}
	claims := &accessClaims{
		RegisteredClaims: ts.registered(u.ID, now, exp),
		SID:              s.ID,
		Email:            u.Email,
		Name:             u.Name,
		Roles:            u.Roles,
		AMR:              s.AMR,
		Extra:            u.Claims,
	}
	if !s.AuthTime.IsZero() {
		claims.AuthTime = jwt.NewNumericDate(s.AuthTime)
	}
	if s.JKT != "" {
		claims.CNF = &confirmation{JKT: s.JKT}
	}
	claimsJSON, err := marshalClaims(claims)
	if err != nil {
		return "", nil, nil, err
	}
	tok, err := ts.signJSON(typAccess, claimsJSON)
	return tok, claims, claimsJSON, err
}

// issueRefresh signs a refresh token for a session's generation; it expires
// with the session's absolute lifetime (idle expiry is the store's job).
func (ts *tokenService) issueRefresh(s Session) (string, error) {
	return ts.sign(typRefresh, &refreshClaims{
		RegisteredClaims: ts.registered(s.User, ts.now(), s.Expires),
		SID:              s.ID,
		Generation:       s.Generation,
	})
}

func (ts *tokenService) registered(sub string, now, exp time.Time) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Issuer:    ts.issuer,
		Audience:  jwt.ClaimStrings{ts.audience},
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
		ID:        randomID(),
	}
}

func (ts *tokenService) sign(typ string, claims jwt.Claims) (string, error) {
	claimsJSON, err := marshalClaims(claims)
	if err != nil {
		return "", err
	}
	return ts.signJSON(typ, claimsJSON)
}

// marshalClaims is json.Marshal(claims), calling a MarshalJSON method
// directly: json.Marshal would check and compact its (already compact)
// output once more.
func marshalClaims(claims jwt.Claims) ([]byte, error) {
	if m, ok := claims.(json.Marshaler); ok {
		return m.MarshalJSON()
	}
	return json.Marshal(claims)
}

// tokenHeader is a token's JOSE header, its fields in the order
// golang-jwt writes them (it marshals a map: sorted keys).
type tokenHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// signJSON signs claims already marshalled, with the signing key, by
// golang-jwt's signing method for it: the same token golang-jwt's
// SignedString makes (TestSignJSONMatchesGolangJWT), without marshalling
// a header map and the claims again.
func (ts *tokenService) signJSON(typ string, claimsJSON []byte) (string, error) {
	key := ts.keys.signer
	header, err := ts.keys.headerSegment(key, typ) // fastverify.go
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := make([]byte, 0, len(header)+1+enc.EncodedLen(len(claimsJSON)))
	input = append(input, header...)
	input = append(input, '.')
	input = enc.AppendEncode(input, claimsJSON)
	sig, err := key.method.Sign(string(input), key.sign)
	if err != nil {
		return "", err
	}
	return string(input) + "." + enc.EncodeToString(sig), nil
}

// headerSegment is the encoded header of the tokens of typ signed with
// key, as golang-jwt's SignedString writes it.
func headerSegment(key *jwtKey, typ string) (string, error) {
	header, err := json.Marshal(tokenHeader{Alg: key.method.Alg(), Kid: key.kid, Typ: typ})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(header), nil
}

// verifyAccess accepts only a valid access token of this realm.
func (ts *tokenService) verifyAccess(raw string) (*accessClaims, error) {
	claims := new(accessClaims)
	if err := ts.verify(raw, typAccess, claims); err != nil {
		return nil, err
	}
	if claims.SID == "" || claims.Subject == "" {
		return nil, fmt.Errorf("%w: missing sub or sid", errInvalidToken)
	}
	return claims, nil
}

// verifyRefresh accepts only a valid refresh token of this realm.
func (ts *tokenService) verifyRefresh(raw string) (*refreshClaims, error) {
	if claims, ok := ts.fastVerifyRefresh(raw); ok { // fastverify.go
		return claims, nil
	}
	claims := new(refreshClaims)
	if err := ts.verify(raw, typRefresh, claims); err != nil {
		return nil, err
	}
	if claims.SID == "" || claims.Subject == "" {
		return nil, fmt.Errorf("%w: missing sub or sid", errInvalidToken)
	}
	// Generations start at 1: a refresh token without one was never
	// issued, and must not reach the store as "generation 0", which would
	// be taken for reuse and revoke the session.
	if claims.Generation == 0 {
		return nil, fmt.Errorf("%w: missing gen", errInvalidToken)
	}
	return claims, nil
}

func (ts *tokenService) verify(raw, wantTyp string, claims jwt.Claims) error {
	if raw == "" || len(raw) > maxTokenSize {
		return fmt.Errorf("%w: empty or oversized", errInvalidToken)
	}
	if err := checkTokenJSON(raw); err != nil {
		return fmt.Errorf("%w: %v", errInvalidToken, err)
	}
	_, err := ts.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		return ts.keyFor(t, wantTyp)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errInvalidToken, err)
	}
	return nil
}

// keyFor picks the verification key by kid and insists on that key's
// algorithm and on the expected token type. Headers that point elsewhere
// for a key (jku, jwk, x5u, x5c) are never consulted.
func (ts *tokenService) keyFor(t *jwt.Token, wantTyp string) (any, error) {
	if typ, _ := t.Header["typ"].(string); !typMatches(typ, wantTyp) {
		return nil, fmt.Errorf("token type %q, want %q", typ, wantTyp)
	}
	kid, _ := t.Header["kid"].(string)
	key, ok := ts.keys.byKID[kid]
	if !ok {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	if t.Method.Alg() != key.method.Alg() {
		return nil, fmt.Errorf("algorithm %q does not match key %q", t.Method.Alg(), kid)
	}
	return key.verify, nil
}

// typMatches compares a typ header as RFC 8725 §3.11 advises: case
// insensitive, with an optional "application/" prefix.
func typMatches(typ, want string) bool {
	typ = strings.ToLower(typ)
	return typ == want || typ == "application/"+want
}

// verifyAccessCached is verifyAccess with the verified-token cache in
// front, and the HS256 fast path (fastVerifyAccess) before the full
// parser. The claims it returns are shared with other requests: read-only.
// Callers still check revocation.
func (ts *tokenService) verifyAccessCached(raw string) (*accessClaims, error) {
	now := ts.now()
	claims, h := ts.cache.lookup(raw, now)
	if claims != nil {
		return claims, nil
	}
	claims, ok := ts.fastVerifyAccessAt(raw, now)
	if !ok {
		var err error
		if claims, err = ts.verifyAccess(raw); err != nil {
			return nil, err
		}
	}
	// made before the claims are shared, so hits never write to them
	claims.placeholders = claims.placeholder
	ts.cache.insert(raw, h, claims)
	return claims, nil
}
