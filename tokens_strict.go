package tokenauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// golang-jwt decodes a token's header and claims with encoding/json, which
// keeps the last of duplicate keys and accepts numbers written as strings
// for the registered time claims. Neither is ever produced by a correct
// signer, and both let one token mean different things to different
// parsers (a header with two "typ", claims with two "sub"), so checkTokenJSON
// refuses them before the token is parsed. It runs after the size check, on
// at most maxTokenSize bytes.

// maxNumericDate is the largest exp/nbf/iat accepted: 9999-12-31T23:59:59Z.
// Larger values overflow the conversion to time.Time, and do so
// differently across platforms.
const maxNumericDate = 253402300799

// timeClaims must be JSON numbers in [0, maxNumericDate] when present.
var timeClaims = map[string]bool{"exp": true, "nbf": true, "iat": true}

// checkTokenJSON checks the header and claims segments of a compact JWS:
// canonical base64url, one JSON object each, no duplicate keys at any
// depth, and numeric time claims within range.
func checkTokenJSON(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return errors.New("not a compact JWS")
	}
	for i, seg := range parts[:2] {
		data, err := base64.RawURLEncoding.Strict().DecodeString(seg)
		if err != nil {
			return fmt.Errorf("segment %d: %v", i, err)
		}
		if err := checkJSONObject(data, i == 1); err != nil {
			return fmt.Errorf("segment %d: %v", i, err)
		}
	}
	return nil
}

// checkJSONObject walks one JSON object, refusing duplicate keys; for the
// claims (isClaims) it also checks the top-level time claims.
func checkJSONObject(data []byte, isClaims bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	if err := walkObject(dec, isClaims); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// walkObject reads the members of an object whose '{' was just read.
func walkObject(dec *json.Decoder, topClaims bool) error {
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if topClaims && timeClaims[key] {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			n, ok := tok.(json.Number)
			if !ok {
				return fmt.Errorf("claim %q is not a number", key)
			}
			f, err := n.Float64()
			if err != nil || f < 0 || f > maxNumericDate {
				return fmt.Errorf("claim %q out of range", key)
			}
			continue
		}
		if err := walkValue(dec); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func walkValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, false)
	case json.Delim('['):
		for dec.More() {
			if err := walkValue(dec); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}
