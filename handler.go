package tokenauth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// ServeHTTP answers requests for the authentication endpoint and guards
// every other request that reaches it.
func (ta *TokenAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	sub, atEndpoint := ta.endpointPath(r.URL.Path)
	ta.offerNonce(w, r, atEndpoint) // dpop_nonce.go
	if atEndpoint {
		return ta.serveEndpoint(w, r, sub)
	}
	return ta.guard(w, r, next)
}

// endpointPath reports whether path is the endpoint or under it, and the
// rest of the path after the endpoint ("" for the endpoint itself).
func (ta *TokenAuth) endpointPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, ta.Endpoint)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	return strings.TrimSuffix(rest, "/"), true
}

// serveEndpoint routes a request for the endpoint by method and sub-path.
func (ta *TokenAuth) serveEndpoint(w http.ResponseWriter, r *http.Request, sub string) error {
	if handled, err := ta.serveSSOEndpoint(w, r, sub); handled {
		return err
	}
	if handled, err := ta.serveBrowserEndpoint(w, r, sub); handled {
		return err
	}
	if handled, err := ta.serveIdPEndpoint(w, r, sub); handled {
		return err
	}
	if handled, err := ta.serveMFAEndpoint(w, r, sub); handled {
		return err
	}
	if handled, err := ta.servePasskeyEndpoint(w, r, sub); handled {
		return err
	}
	if handled, err := ta.serveAccountEndpoint(w, r, sub); handled {
		return err
	}
	switch {
	case sub == "" && r.Method == http.MethodPost:
		return ta.handlePost(w, r)
	case sub == "" && r.Method == http.MethodDelete:
		return ta.handleLogout(w, r)
	case sub == "":
		w.Header().Set("Allow", "POST, DELETE")
		return writeError(w, newAPIError(http.StatusMethodNotAllowed, "Method not allowed"))
	case sub == "/jwks.json":
		return ta.serveJWKS(w, r)
	}
	return writeError(w, newAPIError(http.StatusNotFound, "Not found"))
}

// answerError writes err as a Feathers error. Errors that are not already
// API errors are server faults: they are logged and answered 503 when the
// store is unreachable, else 500, never with a 4xx a client would act on.
func (ta *TokenAuth) answerError(w http.ResponseWriter, r *http.Request, err error) error {
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		return writeError(w, apiErr)
	}
	ta.logFault(r, err)
	if errors.Is(err, ErrStoreUnavailable) {
		return writeError(w, errStoreDown())
	}
	return writeError(w, errServerFault())
}

// logFault logs a server fault, except an outage the store has logged
// already (once per outage, on every path: JSON and browser).
func (ta *TokenAuth) logFault(r *http.Request, err error) {
	if !errors.Is(err, errOutageLogged) {
		ta.logger.Error("request failed", zap.String("path", r.URL.Path), zap.Error(err))
	}
}

// clientIP is the client address Caddy determined, which honours the
// server's trusted_proxies setting.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}
