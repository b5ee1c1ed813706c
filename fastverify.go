package tokenauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"math/big"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// The fast path verifies the access tokens this plugin signs without
// golang-jwt's generic machinery, whose cost is mostly decoding the header
// into a map and the claims twice over (a validity scan, then reflection):
// about 10 times the HMAC itself. The guard tries it on every cache miss.
//
// It is deliberately narrow and only ever says "accepted" or "not sure":
//   - the token must be in canonical form: three segments of unpadded,
//     strictly canonical base64url; a header holding exactly alg, typ and
//     kid, each once, nothing else (a header segment byte for byte one
//     this plugin writes with one of its keys is known without decoding:
//     knownHeaders);
//   - the kid must name a key whose algorithm is the header's alg (the
//     algorithm is pinned per key, as in keyFor), the typ must be an access
//     token's, the signature must match: HS256 (constant-time comparison),
//     EdDSA, ES256 or RS256, checked as golang-jwt's signing methods do;
//   - the claims are decoded by decodeAccessClaims (the same function the
//     parser path uses) and checked as a jwt.Validator built from the very
//     options of the parser checks them (registeredClaimsValid: exp
//     required, nbf, iat, iss, aud, clock), then for sub and sid as
//     verifyAccess does.
//
// Refresh tokens have a fast path too (fastVerifyRefresh): the same checks
// up to the claims, which must be exactly the ones this plugin writes
// (decodeRefreshClaims), then verifyRefresh's.
//
// Anything else, including every refusal, falls through to the full
// golang-jwt path, which decides and gives the error. So the fast path
// never accepts a token the full path would refuse, and never refuses one
// it would accept; TestFastPathAgreesWithParser checks this on mutated
// tokens, and the fuzz targets FuzzFastPathAgreesWithFullPath and
// FuzzRefreshFastPathAgreesWithFullPath on arbitrary ones. A check added
// to verify, verifyAccess or verifyRefresh must be added here too (or the
// fast path turned off by returning nil, false).

var b64url = base64.RawURLEncoding.Strict()

// maxFastHeader bounds the decoded header the fast path looks at; this
// plugin's headers are about 80 bytes.
const maxFastHeader = 192

// fastVerifyAccess returns the claims of raw if the fast path can accept
// it, else ok == false: the caller must then use verifyAccess.
func (ts *tokenService) fastVerifyAccess(raw string) (claims *accessClaims, ok bool) {
	return ts.fastVerifyAccessAt(raw, ts.now())
}

// maxFastPayload is the decoded claims size the fast path decodes on the
// stack; larger claims get a buffer of their own.
const maxFastPayload = 1024

// fastVerifyAccessAt is fastVerifyAccess with the time claims checked
// against now.
func (ts *tokenService) fastVerifyAccessAt(raw string, now time.Time) (claims *accessClaims, ok bool) {
	var pbuf [maxFastPayload]byte
	payload, ok := ts.fastSignedPayload(raw, typAccess, pbuf[:])
	if !ok {
		return nil, false
	}
	claims = new(accessClaims)
	if decodeAccessClaims(claims, payload) != nil { // copies what it keeps
		return nil, false
	}
	if !ts.registeredClaimsValid(&claims.RegisteredClaims, now) || claims.SID == "" || claims.Subject == "" {
		return nil, false
	}
	return claims, true
}

// fastVerifyRefresh is the fast path for refresh tokens (the endpoint's
// refresh verifies one per rotation): the same checks as for access
// tokens up to the claims, which must be exactly this plugin's (the
// registered ones, sid and gen, each at most once, none null: anything
// else steps aside), then what verifyRefresh checks.
func (ts *tokenService) fastVerifyRefresh(raw string) (*refreshClaims, bool) {
	var pbuf [maxFastPayload]byte
	payload, ok := ts.fastSignedPayload(raw, typRefresh, pbuf[:])
	if !ok {
		return nil, false
	}
	claims := new(refreshClaims)
	if !decodeRefreshClaims(claims, payload) {
		return nil, false
	}
	if !ts.registeredClaimsValid(&claims.RegisteredClaims, ts.now()) || claims.SID == "" || claims.Subject == "" || claims.Generation == 0 {
		return nil, false
	}
	return claims, true
}

// fastSignedPayload checks what the fast path checks before the claims
// (the token's form, a header of exactly alg, typ wantTyp and kid, the
// kid's key and algorithm, the signature) and returns the decoded claims
// JSON, in buf when it fits.
func (ts *tokenService) fastSignedPayload(raw, wantTyp string, buf []byte) ([]byte, bool) {
	if raw == "" || len(raw) > maxTokenSize || ts.validator == nil {
		return nil, false
	}
	dot1 := strings.IndexByte(raw, '.')
	dot2 := strings.LastIndexByte(raw, '.')
	if dot1 < 0 || dot1 == dot2 || strings.IndexByte(raw[dot1+1:dot2], '.') >= 0 {
		return nil, false
	}
	headerSeg, payloadSeg, sigSeg := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]

	// header: most often one this plugin writes, else decoded and read
	key := ts.keys.keyOfKnownHeader(headerSeg, wantTyp)
	if key == nil {
		if key = ts.keys.keyOfHeader(headerSeg, wantTyp); key == nil {
			return nil, false
		}
	}

	// signature
	if key.method.Alg() == "HS256" {
		if !fastVerifyHS256(key, raw[:dot2], sigSeg) {
			return nil, false
		}
	} else if !fastVerifyAsymmetric(key, raw[:dot2], sigSeg) {
		return nil, false
	}

	// claims
	if size := b64url.DecodedLen(len(payloadSeg)); size > len(buf) {
		buf = make([]byte, size)
	}
	n, err := b64url.Decode(buf, bytesView(payloadSeg))
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

// keyOfHeader decodes a header segment and returns the key it names if
// the fast path can take it (fastHeader: exactly alg, typ wantTyp and kid;
// the kid's key has that alg), else nil.
func (ring *keyRing) keyOfHeader(headerSeg, wantTyp string) *jwtKey {
	var hbuf [maxFastHeader]byte
	if b64url.DecodedLen(len(headerSeg)) > len(hbuf) {
		return nil
	}
	n, err := b64url.Decode(hbuf[:], bytesView(headerSeg))
	if err != nil {
		return nil
	}
	alg, kid, ok := fastHeader(hbuf[:n], wantTyp)
	if !ok {
		return nil
	}
	key := ring.byKID[string(kid)]
	if key == nil || key.method.Alg() != string(alg) {
		return nil
	}
	return key
}

// knownHeader is a header segment this plugin writes (signJSON) with a
// key, for tokens of one typ.
type knownHeader struct {
	segment, typ string
	key          *jwtKey
	kid          string // key.kid when listed
}

// knownHeaders lists the header segments signJSON writes with each key,
// for access and refresh tokens. Only segments keyOfHeader itself accepts
// for that key are listed, so keyOfKnownHeader answers as keyOfHeader
// would, without decoding (TestKnownHeadersAnswerAsDecoding).
func knownHeaders(keys []*jwtKey) []knownHeader {
	var known []knownHeader
	for _, k := range keys {
		for _, typ := range [...]string{typAccess, typRefresh} {
			seg, err := headerSegment(k, typ)
			if err != nil {
				continue
			}
			ring := keyRing{byKID: map[string]*jwtKey{k.kid: k}}
			if ring.keyOfHeader(seg, typ) == k {
				known = append(known, knownHeader{segment: seg, typ: typ, key: k, kid: k.kid})
			}
		}
	}
	return known
}

// keyOfKnownHeader returns the key of a header segment this plugin writes
// for tokens of typ wantTyp, or nil when headerSeg is none of them.
func (ring *keyRing) keyOfKnownHeader(headerSeg, wantTyp string) *jwtKey {
	for i := range ring.headers {
		if h := &ring.headers[i]; h.typ == wantTyp && h.segment == headerSeg {
			return h.key
		}
	}
	return nil
}

// headerSegment is the header segment signJSON writes with key for typ:
// the listed one (made once, with the ring), else made now.
func (ring *keyRing) headerSegment(key *jwtKey, typ string) (string, error) {
	for i := range ring.headers {
		if h := &ring.headers[i]; h.key == key && h.typ == typ && h.kid == key.kid {
			return h.segment, nil
		}
	}
	return headerSegment(key, typ)
}

// registeredClaimsValid checks the registered claims exactly as
// ts.validator (a jwt.Validator with the parser's options: exp required,
// nbf and iat not in the future, no leeway, the issuer, the audience)
// does, without its error values and interface calls: the fast path only
// needs yes or no. TestRegisteredClaimsValidMatchesValidator compares the
// two; a change to newTokenService's options must be made here too.
func (ts *tokenService) registeredClaimsValid(c *jwt.RegisteredClaims, now time.Time) bool {
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Time) {
		return false
	}
	if c.NotBefore != nil && now.Before(c.NotBefore.Time) {
		return false
	}
	if c.IssuedAt != nil && now.Before(c.IssuedAt.Time) {
		return false
	}
	aud := c.Audience
	if len(aud) == 0 || len(aud) == 1 && aud[0] == "" || !slices.Contains(aud, ts.audience) {
		return false
	}
	return ts.issuer == "" || c.Issuer == ts.issuer
}

// fastHeader reads a header of exactly an alg, a typ of wantTyp and a
// kid, each once, and returns the alg and the kid (which alias data).
func fastHeader(data []byte, wantTyp string) (alg, kid []byte, ok bool) {
	d := claimsDecoder{data: data}
	var seenAlg, seenTyp, seenKid bool
	d.skipSpace()
	if !d.consume('{') {
		return nil, nil, false
	}
	for {
		d.skipSpace()
		name, ok := d.plainString()
		if !ok {
			return nil, nil, false
		}
		d.skipSpace()
		if !d.consume(':') {
			return nil, nil, false
		}
		d.skipSpace()
		val, ok := d.plainString()
		if !ok {
			return nil, nil, false
		}
		switch {
		case string(name) == "alg" && !seenAlg:
			seenAlg, alg = true, val
		case string(name) == "typ" && !seenTyp && (string(val) == wantTyp || typMatches(string(val), wantTyp)):
			seenTyp = true
		case string(name) == "kid" && !seenKid:
			seenKid, kid = true, val
		default:
			return nil, nil, false
		}
		d.skipSpace()
		if d.consume(',') {
			continue
		}
		if !d.consume('}') || d.end() != nil {
			return nil, nil, false
		}
		return alg, kid, seenAlg && seenTyp && seenKid
	}
}

// plainString reads a JSON string of printable ASCII without escapes, as
// this plugin writes its headers, and returns its bytes (which alias the
// input); any other string is not for the fast path (ok false). Unlike
// key, it never hands the input to encoding/json, so a header decoded
// into a buffer on the stack stays there.
func (d *claimsDecoder) plainString() (s []byte, ok bool) {
	if !d.consume('"') {
		return nil, false
	}
	for i := d.pos; i < len(d.data); i++ {
		switch b := d.data[i]; {
		case b == '"':
			s, d.pos = d.data[d.pos:i], i+1
			return s, true
		case b == '\\' || b < 0x20 || b >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// fastVerifyHS256 checks an HS256 signature (constant-time comparison).
func fastVerifyHS256(key *jwtKey, signingInput, sigSeg string) bool {
	if _, isSecret := key.verify.([]byte); !isSecret || key.mac == nil {
		return false // key.mac: keycache.go; a key without one takes the full path
	}
	var sig [sha256.Size]byte
	if b64url.DecodedLen(len(sigSeg)) != len(sig) {
		return false
	}
	if n, err := b64url.Decode(sig[:], bytesView(sigSeg)); err != nil || n != len(sig) {
		return false
	}
	st := key.mac.Get().(*hmacState)
	st.mac.Reset()
	_, _ = st.mac.Write(bytesView(signingInput))
	good := hmac.Equal(st.mac.Sum(st.sum[:0]), sig[:])
	key.mac.Put(st)
	return good
}

// hmacState is a pooled HMAC with a buffer for its sum (a local one would
// escape through the hash.Hash interface: an allocation per check).
type hmacState struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// maxFastSignature bounds the signatures the fast path decodes: an RSA
// signature is the modulus' size, 512 bytes for 4096-bit keys. Larger
// keys take the golang-jwt path.
const maxFastSignature = 512

// fastVerifyAsymmetric checks an EdDSA, ES256 or RS256 signature the way
// golang-jwt's signing methods do (Ed25519 over the signing input; ES256
// as r||s of 32 bytes each over its SHA-256; RS256 as PKCS #1 v1.5 over
// its SHA-256), with the key of the token's kid, whose algorithm the
// caller has matched with the header's.
func fastVerifyAsymmetric(key *jwtKey, signingInput, sigSeg string) bool {
	var buf [maxFastSignature]byte
	if b64url.DecodedLen(len(sigSeg)) > len(buf) {
		return false
	}
	n, err := b64url.Decode(buf[:], bytesView(sigSeg))
	if err != nil {
		return false
	}
	sig := buf[:n]
	switch key.method.Alg() {
	case "EdDSA":
		pub, ok := key.verify.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, bytesView(signingInput), sig)
	case "ES256":
		pub, ok := key.verify.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256(bytesView(signingInput))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, digest[:], r, s)
	case "RS256":
		pub, ok := key.verify.(*rsa.PublicKey)
		if !ok {
			return false
		}
		digest := sha256.Sum256(bytesView(signingInput))
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
	}
	return false
}

// bytesView is s as a byte slice without copying it, for functions that
// only read their input during the call (base64 decoding, hashing). The
// slice must never be written to or kept.
func bytesView(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
