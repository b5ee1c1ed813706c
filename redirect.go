package tokenauth

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds a redirect target; longer values become "/".
const maxRedirectLen = 2048

// sanitizeRedirect returns target if it is a path on this origin
// ("/x?y#z"), else "/". It refuses everything a browser could read as
// another origin: scheme-relative "//host", "/\host" (browsers treat "\"
// as "/"), absolute URLs and pseudo-schemes such as "javascript:", and
// any control character, space or non-ASCII byte (browsers drop tabs and
// newlines inside URLs, so "/\t/evil" would become "//evil").
func sanitizeRedirect(target string) string {
	if target == "" || len(target) > maxRedirectLen || target[0] != '/' || !plainURLChars(target) {
		return "/"
	}
	if strings.HasPrefix(target, "//") {
		return "/"
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	return target
}

// plainURLChars says whether s has only the characters a redirect target
// may have: printable ASCII without space or backslash (browsers treat "\"
// as "/" and drop tabs and newlines inside URLs).
func plainURLChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}
