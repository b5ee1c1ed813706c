package tokenauth

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// referenceDecode is the two-pass decoding decodeAccessClaims replaced:
// encoding/json into the struct, then into a map for the custom claims.
func referenceDecode(data []byte) (*accessClaims, error) {
	c := new(accessClaims)
	if err := json.Unmarshal(data, (*accessClaimsFields)(c)); err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	for k, raw := range all {
		if reservedClaims[k] {
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		if c.Extra == nil {
			c.Extra = make(map[string]any)
		}
		c.Extra[k] = v
	}
	return c, nil
}

// withoutArena is a copy of c without its decoding arena, for comparing
// its claims with claims decoded by encoding/json (which has none). The
// copy's lists and dates still point into c's arena.
func withoutArena(c *accessClaims) *accessClaims {
	out := *c
	out.arena = claimsArena{}
	return &out
}

func TestDecodeAccessClaimsMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`,
		` { } `,
		`{"iss":"i","sub":"alice","aud":"r","exp":1900000000,"nbf":1700000000,"iat":1700000000,"jti":"j","sid":"s"}`,
		`{"aud":["a","b"],"exp":1900000000.5,"sid":"s","sub":"u"}`,
		`{"sub":"u","email":"a@b.c","name":"Ana \"the\" Dev","roles":["admin","dev"],"sid":"s"}`,
		`{"name":"Zoë \u00e9 \ud83d\ude00","sub":"\u0061lice","roles":[]}`,
		`{"team":"blue","level":3,"flags":[true,false,null],"nested":{"a":[1,{"b":"}"}]},"empty":"","n":null}`,
		"{\n\t\"sub\" : \"u\" ,\r\n \"x\" : -1.5e3 , \"y\" : \"a,b]}\" }",
		`{"gen":7,"typ":"x","id":"ignored","sub":"u"}`,
		`{"ünï":"cödé","k\"q":"v"}`,
		`{"email":null,"roles":null,"aud":null}`,
		`{"exp":0.5e+3,"nbf":0,"iat":1E2,"gen":[1,{"a":null}],"typ":"x"}`,
		`{"sub":"u","sid":"s","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`,
		`{"sub":"u","cnf":null}`,
		// custom strings and literals, read without encoding/json
		`{"t":true,"f":false,"z":null,"s":"caf\u00e9","q":"a\"b","e":"","sp":true ,"w": "x" }`,
		"{\"bad\":\"\xff\xfe\",\"ctl\":\"tab\\tx\"}",
	} {
		got, err := unmarshalClaims([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		want, err := referenceDecode([]byte(in))
		if err != nil {
			t.Fatalf("%s: reference: %v", in, err)
		}
		if !reflect.DeepEqual(withoutArena(got), want) {
			t.Errorf("%s:\n got  %+v\n want %+v", in, got, want)
		}
	}
}

// TestDecodeAccessClaimsRefusesAmbiguity: what encoding/json would accept
// by keeping the last duplicate, or by reading null or an out-of-range
// number as a time, is refused, as checkTokenJSON refuses it on the
// parser path.
func TestDecodeAccessClaimsRefusesAmbiguity(t *testing.T) {
	for _, in := range []string{
		`{"sub":"first","sub":"second"}`,
		`{"roles":["a"],"roles":["b","c"]}`,
		`{"x":1,"x":2}`,
		`{"team":{"a":1,"a":2}}`,
		`{"team":[{"a":1,"a":2}]}`,
		`{"exp":null}`,
		`{"nbf":-0.5e+3}`,
		`{"iat":253402300800}`,
	} {
		if _, err := unmarshalClaims([]byte(in)); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}

func unmarshalClaims(data []byte) (*accessClaims, error) {
	c := new(accessClaims)
	return c, json.Unmarshal(data, c)
}

func TestDecodeAccessClaimsIssuedTokenRoundTrip(t *testing.T) {
	ts, _ := newTestTokens(t, 0)
	tok := mintAccess(t, ts, testUser, "s1")
	c, err := ts.verifyAccess(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || c.SID != "s1" || c.Email != testUser.Email || c.Name != "Alice" ||
		!reflect.DeepEqual(c.Roles, testUser.Roles) || !reflect.DeepEqual(c.Extra, testUser.Claims) ||
		c.ExpiresAt == nil || c.IssuedAt == nil || c.NotBefore == nil || len(c.Audience) != 1 {
		t.Fatalf("round trip lost claims: %+v", c)
	}
}

func TestDecodeAccessClaimsRefusesMalformedInput(t *testing.T) {
	// called directly: encoding/json would refuse most of these before
	for _, in := range []string{
		``, `[]`, `"x"`, `{`, `{"sub"`, `{"sub":`, `{"sub":"u"`, `{"sub":"u",}`, `{"sub" "u"}`,
		`{"sub":"u"} x`, `{"sub":"unterminated}`, `{"x":[1,2}`, `{"x":"a\`, `{"x":}`, `{sub:"u"}`,
		`{"sub":"u" "sid":"s"}`, `{"roles":["a" "b"]}`, `{"roles":["a",`,
	} {
		if err := decodeAccessClaims(new(accessClaims), []byte(in)); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

func TestDecodeAccessClaimsRefusesWrongTypes(t *testing.T) {
	for _, in := range []string{
		`{"sub":1}`, `{"sid":true}`, `{"email":["a"]}`, `{"exp":"soon"}`, `{"iat":{}}`, `{"nbf":"1"}`,
		`{"aud":1}`, `{"aud":[1]}`, `{"roles":"admin"}`, `{"roles":[1]}`, `{"exp":1e999}`,
		`{"custom":tru}`, `{"name":"\x01"}`, `{"exp":+1}`, `{"exp":01}`, `{"exp":1.}`, `{"exp":1e}`,
		`{"exp":-}`, `{"exp":.5}`, `{"gen":tru}`, `{"typ":[1,}`,
		`{"custom":"\x01"}`, `{"custom":"a\q"}`, `{"custom":true1}`, `{"custom":nul}`, `{"custom":"open}`,
	} {
		if _, err := unmarshalClaims([]byte(in)); err == nil {
			t.Errorf("%s: accepted", in)
		}
		if err := decodeAccessClaims(new(accessClaims), []byte(in)); err == nil {
			t.Errorf("%s: accepted by the decoder itself", in)
		}
	}
}

// TestReservedClaimBitMatchesReservedClaims: every reserved claim has its
// own bit, and no other name has one.
func TestReservedClaimBitMatchesReservedClaims(t *testing.T) {
	var all uint32
	for name := range reservedClaims {
		bit := reservedClaimBit([]byte(name))
		if bit == 0 || all&bit != 0 {
			t.Fatalf("reserved claim %q: bit %b (taken so far %b)", name, bit, all)
		}
		all |= bit
	}
	for _, name := range []string{"team", "Sub", "exp ", "", "roles2", "auth-time"} {
		if reservedClaimBit([]byte(name)) != 0 {
			t.Errorf("%q is not reserved but has a bit", name)
		}
	}
}

// TestNumericDateIntegersAsFloats: time claims written as integers (the
// fast reading) decode exactly as through ParseFloat, at the edges of the
// range and of the fast reading's 15 digits.
func TestNumericDateIntegersAsFloats(t *testing.T) {
	for _, in := range []string{"0", "1", "1700000000", "253402300799", "253402300800", "999999999999999", "1000000000000000", "1700000000.0", "1.7e9", "-0"} {
		fast, fastErr := (&claimsDecoder{data: []byte(in)}).numericDate()
		f, err := strconv.ParseFloat(in, 64)
		var want *jwt.NumericDate
		if err == nil && f >= 0 && f <= maxNumericDate {
			round, frac := math.Modf(f)
			want = jwt.NewNumericDate(time.Unix(int64(round), int64(frac*1e9)))
		}
		if (fastErr == nil) != (want != nil) || want != nil && !fast.Equal(want.Time) {
			t.Errorf("%s: decoded %v (%v), want %v", in, fast, fastErr, want)
		}
	}
}
