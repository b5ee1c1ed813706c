package tokenauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// decodeAccessClaims decodes an access token's claims object in a single
// pass: the known claims are read straight into their fields, every other
// claim into Extra. It replaces decoding the object twice with
// encoding/json (once into the struct, once into a map to find the custom
// claims), which cost about as much as the rest of verification.
//
// Differences from encoding/json's struct decoding, all stricter: claim
// names match exactly (JWT claim names are case-sensitive, RFC 7519 §4),
// and a known claim of the wrong JSON type is an error. null leaves a
// claim unset. golang-jwt hands this function the claims only after
// encoding/json has checked they are well-formed JSON; it still refuses
// anything malformed on its own rather than trusting that.
//
// It allocates once for every string claim together: the object is copied
// into one string, and every plain claim string is a piece of it; lists
// and time claims take their storage from the claims' own arena (see
// claimsArena). Only custom claims, escaped strings and long lists
// allocate more.
func decodeAccessClaims(c *accessClaims, data []byte) error {
	src := string(data) // the one copy: data belongs to the caller
	d := claimsDecoder{data: bytesView(src), src: src, arena: &c.arena}
	d.skipSpace()
	if !d.consume('{') {
		return d.syntaxError("expected {")
	}
	d.skipSpace()
	if d.consume('}') {
		return d.end()
	}
	var seen claimSet
	for {
		d.skipSpace()
		key, err := d.key()
		if err != nil {
			return err
		}
		if seen.add(key, c) {
			// as checkTokenJSON: a token must mean one thing to every parser
			return fmt.Errorf("duplicate claim %q", key)
		}
		d.skipSpace()
		if !d.consume(':') {
			return d.syntaxError("expected :")
		}
		d.skipSpace()
		if err := d.claim(c, key); err != nil {
			return err
		}
		d.skipSpace()
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return d.end()
		}
		return d.syntaxError("expected , or }")
	}
}

// refreshClaimNames are the claims decodeRefreshClaims takes, by bit.
var refreshClaimNames = [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "gen"}

// decodeRefreshClaims decodes a refresh token's claims for the fast path
// (fastVerifyRefresh), or reports false for anything it does not take:
// any claim but refreshClaimNames, a claim twice, a null, a key with
// escapes, a value of the wrong type, a gen that encoding/json would not
// decode into a uint64. What it takes, it decodes as encoding/json does
// into refreshClaims.
func decodeRefreshClaims(c *refreshClaims, data []byte) bool {
	src := string(data) // the one copy: data belongs to the caller
	d := claimsDecoder{data: bytesView(src), src: src}
	d.skipSpace()
	if !d.consume('{') {
		return false
	}
	var seen uint16
	for first := true; ; first = false {
		d.skipSpace()
		if first && d.consume('}') {
			return d.end() == nil
		}
		key, ok := d.plainString()
		if !ok {
			return false
		}
		bit := uint16(0)
		for i, name := range refreshClaimNames {
			if string(key) == name {
				bit = 1 << i
			}
		}
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		d.skipSpace()
		if !d.consume(':') {
			return false
		}
		d.skipSpace()
		if d.peek() == 'n' {
			return false // null: the full path decides
		}
		if d.refreshClaim(c, key) != nil {
			return false
		}
		d.skipSpace()
		if d.consume(',') {
			continue
		}
		return d.consume('}') && d.end() == nil
	}
}

// refreshClaim decodes the value of one of refreshClaimNames, at d.pos.
func (d *claimsDecoder) refreshClaim(c *refreshClaims, key []byte) (err error) {
	if handled, err := d.sharedClaim(&c.RegisteredClaims, &c.SID, key); handled {
		return err
	}
	if string(key) == "gen" {
		c.Generation, err = d.unsigned()
	}
	return err
}

// sharedClaim decodes, at d.pos, one of the claims access and refresh
// tokens share (the registered ones and sid) into rc or sid; handled is
// false for any other claim.
func (d *claimsDecoder) sharedClaim(rc *jwt.RegisteredClaims, sid *string, key []byte) (handled bool, err error) {
	switch string(key) {
	case "iss":
		err = d.optString(&rc.Issuer)
	case "sub":
		err = d.optString(&rc.Subject)
	case "jti":
		err = d.optString(&rc.ID)
	case "sid":
		err = d.optString(sid)
	case "aud":
		err = d.audience(&rc.Audience)
	case "exp":
		rc.ExpiresAt, err = d.numericDate()
	case "nbf":
		rc.NotBefore, err = d.numericDate()
	case "iat":
		rc.IssuedAt, err = d.numericDate()
	default:
		return false, nil
	}
	return true, err
}

// unsigned reads a JSON number as encoding/json decodes it into a uint64:
// decimal digits only (no sign, fraction or exponent), at most 2^64-1.
func (d *claimsDecoder) unsigned() (uint64, error) {
	start := d.pos
	if !d.number() {
		return 0, errClaimType
	}
	return strconv.ParseUint(string(d.data[start:d.pos]), 10, 64)
}

// claimSet remembers which claims an object has had, to refuse duplicates
// without allocating: the reserved claims by bit, custom ones by Extra.
type claimSet struct{ reserved uint32 }

// reservedClaimBit numbers the reserved claims for claimSet (0: not
// reserved). A switch, not a map: no hashing of every claim name.
// TestReservedClaimBitMatchesReservedClaims keeps it in step with
// reservedClaims.
func reservedClaimBit(key []byte) uint32 {
	switch string(key) {
	case "iss":
		return 1 << 0
	case "sub":
		return 1 << 1
	case "aud":
		return 1 << 2
	case "exp":
		return 1 << 3
	case "nbf":
		return 1 << 4
	case "iat":
		return 1 << 5
	case "jti":
		return 1 << 6
	case "sid":
		return 1 << 7
	case "gen":
		return 1 << 8
	case "email":
		return 1 << 9
	case "name":
		return 1 << 10
	case "roles":
		return 1 << 11
	case "id":
		return 1 << 12
	case "typ":
		return 1 << 13
	case "amr":
		return 1 << 14
	case "auth_time":
		return 1 << 15
	case "cnf":
		return 1 << 16
	}
	return 0
}

// add records key and reports whether it was seen before.
func (s *claimSet) add(key []byte, c *accessClaims) bool {
	if bit := reservedClaimBit(key); bit != 0 {
		dup := s.reserved&bit != 0
		s.reserved |= bit
		return dup
	}
	_, dup := c.Extra[string(key)]
	return dup
}

type claimsDecoder struct {
	data []byte
	pos  int
	// src, when set, is data as a string: plain strings are sliced from
	// it instead of copied. arena, when set, holds lists and dates.
	src   string
	arena *claimsArena
}

// claimsArena is storage inside accessClaims for what decoding would
// otherwise allocate piece by piece: the time claims (exp, nbf, iat,
// auth_time point into dates) and the string lists (aud, roles, amr are
// slices of strs, capped so that an append by anyone reallocates rather
// than overwrites a neighbour). A claims value is decoded once, so each
// slot is used at most once.
type claimsArena struct {
	dates [4]jwt.NumericDate
	nDate int
	strs  [8]string
	nStr  int
}

// date stores t in the arena and returns where, or a new NumericDate when
// the arena is full or absent.
func (a *claimsArena) date(t time.Time) *jwt.NumericDate {
	if a == nil || a.nDate == len(a.dates) {
		return jwt.NewNumericDate(t)
	}
	p := &a.dates[a.nDate]
	a.nDate++
	*p = jwt.NumericDate{Time: t.Truncate(jwt.TimePrecision)} // as jwt.NewNumericDate
	return p
}

// list returns an empty string list to append to: the rest of the arena,
// or nil (append allocates) when none is left.
func (a *claimsArena) list() []string {
	if a == nil {
		return nil
	}
	return a.strs[a.nStr:a.nStr]
}

// keep closes a list made from list(): its elements stay in the arena if
// they fit (capped there), and the arena moves past them.
func (a *claimsArena) keep(l []string) []string {
	if a == nil || len(l) == 0 || a.nStr+len(l) > len(a.strs) || &l[0] != &a.strs[a.nStr] {
		return l
	}
	start := a.nStr
	a.nStr += len(l)
	return a.strs[start:a.nStr:a.nStr]
}

var errClaimType = errors.New("claim has the wrong JSON type")

// claim decodes the value of one claim, at d.pos. key is only read.
func (d *claimsDecoder) claim(c *accessClaims, key []byte) error {
	if handled, err := d.sharedClaim(&c.RegisteredClaims, &c.SID, key); handled {
		if err != nil {
			return fmt.Errorf("claim %q: %w", key, err)
		}
		return nil
	}
	var err error
	switch string(key) { // compiled without a copy of key
	case "email":
		err = d.optString(&c.Email)
	case "name":
		err = d.optString(&c.Name)
	case "roles":
		err = d.stringList(&c.Roles)
	case "amr":
		err = d.stringList(&c.AMR)
	case "auth_time":
		c.AuthTime, err = d.numericDate()
	case "cnf":
		err = d.confirmation(&c.CNF)
	default:
		reserved := reservedClaimBit(key) != 0 // reserved, not an access token field (gen, id, typ)
		if !reserved && d.peek() == '"' {
			// a custom claim that is a string, the common kind: read as
			// str reads every other string (the same value encoding/json
			// gives), without a second pass through encoding/json
			v, err := d.str()
			if err != nil {
				return fmt.Errorf("claim %q: %w", key, err)
			}
			c.addExtra(d.shared(key), v)
			return nil
		}
		raw, skipErr := d.skipValue()
		if skipErr != nil {
			return skipErr
		}
		if reserved && !json.Valid(raw) {
			return d.syntaxError("malformed value")
		}
		if raw[0] == '{' || raw[0] == '[' {
			// encoding/json keeps the last of duplicate keys, and the full
			// path refuses them at any depth, of any claim: so do we
			if err := walkValue(json.NewDecoder(bytes.NewReader(raw))); err != nil {
				return fmt.Errorf("claim %q: %w", key, err)
			}
		}
		if reserved {
			return nil
		}
		var v any
		switch string(raw) {
		case "true", "false", "null": // what encoding/json makes of them
			v = raw[0] == 't'
			if raw[0] == 'n' {
				v = nil
			}
		default:
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
		}
		c.addExtra(d.shared(key), v)
		return nil
	}
	if err != nil {
		return fmt.Errorf("claim %q: %w", key, err)
	}
	return nil
}

// addExtra keeps a custom claim's value.
func (c *accessClaims) addExtra(key string, v any) {
	if c.Extra == nil {
		c.Extra = make(map[string]any, 4)
	}
	c.Extra[key] = v
}

// shared returns b as a string: the piece of d.src it is, when b is a
// piece of d.data viewing d.src (no copy), else a copy.
func (d *claimsDecoder) shared(b []byte) string {
	if d.src != "" && len(b) > 0 {
		base := uintptr(unsafe.Pointer(unsafe.StringData(d.src)))
		p := uintptr(unsafe.Pointer(&b[0]))
		if p >= base && p+uintptr(len(b)) <= base+uintptr(len(d.src)) {
			off := int(p - base)
			return d.src[off : off+len(b)]
		}
	}
	return string(b)
}

func (d *claimsDecoder) syntaxError(msg string) error {
	return fmt.Errorf("malformed claims at offset %d: %s", d.pos, msg)
}

// end checks nothing but white space follows the object.
func (d *claimsDecoder) end() error {
	d.skipSpace()
	if d.pos != len(d.data) {
		return d.syntaxError("data after the claims object")
	}
	return nil
}

func (d *claimsDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *claimsDecoder) consume(b byte) bool {
	if d.pos < len(d.data) && d.data[d.pos] == b {
		d.pos++
		return true
	}
	return false
}

func (d *claimsDecoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// null consumes a JSON null if one is next.
func (d *claimsDecoder) null() bool {
	if len(d.data)-d.pos >= 4 && string(d.data[d.pos:d.pos+4]) == "null" {
		d.pos += 4
		return true
	}
	return false
}

// str reads a JSON string. Plain ASCII without escapes (every claim this
// plugin writes, short of non-ASCII names) is sliced directly; anything
// else goes through encoding/json, which handles escapes and invalid UTF-8.
func (d *claimsDecoder) str() (string, error) {
	if !d.consume('"') {
		return "", d.syntaxError("expected a string")
	}
	start := d.pos
	for i := start; i < len(d.data); i++ {
		switch b := d.data[i]; {
		case b == '"':
			d.pos = i + 1
			if d.src != "" {
				return d.src[start:i], nil
			}
			return string(d.data[start:i]), nil
		case b == '\\' || b < 0x20 || b >= 0x80:
			d.pos = start - 1
			raw, err := d.skipString()
			if err != nil {
				return "", err
			}
			var s string
			err = json.Unmarshal(raw, &s)
			return s, err
		}
	}
	return "", d.syntaxError("unterminated string")
}

// key reads an object key without allocating when it is plain ASCII: the
// returned bytes alias the input and are only valid until it changes.
func (d *claimsDecoder) key() ([]byte, error) {
	if d.consume('"') {
		start := d.pos
		for i := start; i < len(d.data); i++ {
			b := d.data[i]
			if b == '"' {
				d.pos = i + 1
				return d.data[start:i], nil
			}
			if b == '\\' || b < 0x20 || b >= 0x80 {
				break
			}
		}
		d.pos = start - 1
	}
	s, err := d.str()
	return []byte(s), err
}

func (d *claimsDecoder) optString(dst *string) error {
	if d.null() {
		return nil
	}
	if d.peek() != '"' {
		return errClaimType
	}
	s, err := d.str()
	*dst = s
	return err
}

// confirmation reads a cnf claim (or null): an object with a non-empty
// jkt. Only bound tokens have one, so encoding/json decoding it is fine.
func (d *claimsDecoder) confirmation(dst **confirmation) error {
	if d.null() {
		return nil
	}
	if d.peek() != '{' {
		return errClaimType
	}
	raw, err := d.skipValue()
	if err != nil {
		return err
	}
	var cnf confirmation
	if err := json.Unmarshal(raw, &cnf); err != nil || cnf.JKT == "" {
		return errClaimType
	}
	*dst = &cnf
	return nil
}

// stringList reads an array of strings (or null).
func (d *claimsDecoder) stringList(dst *[]string) error {
	if d.null() {
		*dst = nil
		return nil
	}
	if !d.consume('[') {
		return errClaimType
	}
	list := d.arena.list()
	if list == nil {
		list = []string{}
	}
	d.skipSpace()
	if d.consume(']') {
		*dst = list[:0:0]
		return nil
	}
	for {
		d.skipSpace()
		if d.peek() != '"' {
			return errClaimType
		}
		s, err := d.str()
		if err != nil {
			return err
		}
		list = append(list, s)
		d.skipSpace()
		if d.consume(',') {
			continue
		}
		if d.consume(']') {
			*dst = d.arena.keep(list)
			return nil
		}
		return d.syntaxError("expected , or ]")
	}
}

// audience reads aud as golang-jwt's ClaimStrings does: a string or an
// array of strings.
func (d *claimsDecoder) audience(dst *jwt.ClaimStrings) error {
	switch d.peek() {
	case '"':
		s, err := d.str()
		*dst = d.arena.keep(append(d.arena.list(), s))
		return err
	case '[':
		var list []string
		if err := d.stringList(&list); err != nil {
			return err
		}
		*dst = list
		return nil
	}
	if d.null() {
		return nil
	}
	return errClaimType
}

// numericDate reads a NumericDate (seconds, possibly fractional) exactly
// as golang-jwt's NumericDate.UnmarshalJSON does.
func (d *claimsDecoder) numericDate() (*jwt.NumericDate, error) {
	start := d.pos
	if !d.number() { // null too: as checkTokenJSON, a time claim is a number or absent
		return nil, errClaimType
	}
	text := d.data[start:d.pos]
	if n, ok := smallInteger(text); ok { // what ParseFloat and Modf give for it, without them
		if n > maxNumericDate {
			return nil, errors.New("out of range")
		}
		return d.arena.date(time.Unix(n, 0)), nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return nil, err
	}
	if f < 0 || f > maxNumericDate {
		return nil, errors.New("out of range")
	}
	round, frac := math.Modf(f)
	return d.arena.date(time.Unix(int64(round), int64(frac*1e9))), nil
}

// smallInteger reads a number of at most 15 decimal digits and nothing
// else (no sign, point or exponent): a value a float64 holds exactly, so
// reading it as one and splitting off its (zero) fraction gives the same.
func smallInteger(text []byte) (int64, bool) {
	if len(text) == 0 || len(text) > 15 {
		return 0, false
	}
	var n int64
	for _, b := range text {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

// number moves past a JSON number, following its grammar exactly
// (RFC 8259 §6: no leading +, no leading zeros, digits around the point).
func (d *claimsDecoder) number() bool {
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	d.consume('-')
	if d.consume('0') {
		if c := d.peek(); c >= '0' && c <= '9' {
			return false
		}
	} else if digits() == 0 {
		return false
	}
	if d.consume('.') && digits() == 0 {
		return false
	}
	if d.consume('e') || d.consume('E') {
		if !d.consume('+') {
			d.consume('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// skipString moves past a string, escapes included, and returns it with
// its quotes.
func (d *claimsDecoder) skipString() ([]byte, error) {
	start := d.pos
	if !d.consume('"') {
		return nil, d.syntaxError("expected a string")
	}
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case '\\':
			d.pos += 2
		case '"':
			d.pos++
			return d.data[start:d.pos], nil
		default:
			d.pos++
		}
	}
	return nil, d.syntaxError("unterminated string")
}

// skipValue moves past any JSON value and returns its bytes; encoding/json
// checks them when they are decoded.
func (d *claimsDecoder) skipValue() ([]byte, error) {
	start := d.pos
	depth := 0
	for d.pos < len(d.data) {
		switch b := d.data[d.pos]; b {
		case '"':
			if _, err := d.skipString(); err != nil {
				return nil, err
			}
		case '{', '[':
			depth++
			d.pos++
		case '}', ']':
			if depth == 0 {
				return d.scalar(start)
			}
			depth--
			d.pos++
		case ',':
			if depth == 0 {
				return d.scalar(start)
			}
			d.pos++
		default:
			d.pos++
		}
		if depth == 0 && d.pos > start && (d.data[d.pos-1] == '"' || d.data[d.pos-1] == '}' || d.data[d.pos-1] == ']') {
			return d.data[start:d.pos], nil
		}
	}
	if depth != 0 {
		return nil, d.syntaxError("unterminated value")
	}
	return d.scalar(start)
}

// scalar returns a number or literal ending at d.pos.
func (d *claimsDecoder) scalar(start int) ([]byte, error) {
	if d.pos == start {
		return nil, d.syntaxError("expected a value")
	}
	return d.data[start:d.pos], nil
}
