package tokenauth

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// unsafeMethod says whether a method may change state, so that a request
// carrying the access cookie must prove it comes from this site.
func unsafeMethod(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// originVerdict is what the Origin and Referer headers say about where a
// request comes from.
type originVerdict int

const (
	originUnknown originVerdict = iota // neither header (or Referer stripped by policy)
	originSame                         // the same host as the request
	originCross                        // another host, or an opaque origin ("null")
)

// requestOrigin compares the request's Origin header (or, when there is
// none, its Referer) with the Host the request was sent to. Only host and
// port are compared (a default port counts as none): behind a proxy that
// terminates TLS the scheme the browser used is not always known, and the
// cookies are SameSite=Lax, which browsers apply per scheme anyway.
func requestOrigin(r *http.Request) originVerdict {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return originUnknown
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return originCross // includes "null", sent by sandboxed and privacy-redirected documents
	}
	if normalHost(u.Host) == normalHost(r.Host) {
		return originSame
	}
	return originCross
}

// normalHost lowercases a host[:port] and drops a default port (80 or
// 443), so that "Example.com:443" and "example.com" compare equal.
func normalHost(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if port == "" || port == "80" || port == "443" {
		return host
	}
	return net.JoinHostPort(host, port)
}

// csrfAllowed says whether a cookie-authenticated request may go on:
// safe methods always, unsafe ones only from this origin.
func csrfAllowed(r *http.Request) bool {
	return !unsafeMethod(r.Method) || requestOrigin(r) == originSame
}

// errCrossOrigin is the answer to a cookie-authenticated unsafe request
// that does not show it comes from this site.
func errCrossOrigin() *apiError {
	return newAPIError(http.StatusForbidden, "Cross-origin request refused: send a same-origin Origin header, or use an Authorization header")
}
