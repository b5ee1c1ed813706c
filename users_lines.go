package tokenauth

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// unknownFieldOffset finds where the field named by a
// json.Decoder.DisallowUnknownFields error first appears as a key of the
// users file's own objects (the document, a user):
// that error carries no position of its own (the decoder's offset is then
// past the whole document).
func unknownFieldOffset(data []byte, err error) (int64, bool) {
	if err == nil {
		return 0, false
	}
	quoted, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return 0, false
	}
	field, uerr := strconv.Unquote(quoted)
	if uerr != nil {
		return 0, false
	}
	type frame struct{ object, wantKey bool }
	var stack []frame
	afterValue := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return 0, false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				afterValue()
				continue
			}
			// only where users-file fields are: the top object (depth
			// 1) and the user objects (depth 3), not inside claims
			if s, _ := tok.(string); s == field && (n == 1 || n == 3) {
				return dec.InputOffset(), true
			}
			stack[n-1].wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			afterValue()
		default:
			afterValue()
		}
	}
}
