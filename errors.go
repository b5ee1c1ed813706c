package tokenauth

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// apiError is a FeathersJS-shaped error, which Feathers clients decode
// into their own error classes.
type apiError struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Code      int    `json:"code"`
	ClassName string `json:"className"`
	Data      any    `json:"data,omitempty"`
	// retryAfter, when set, is sent as the Retry-After header.
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.Name + ": " + e.Message }

// feathersNames maps status codes to Feathers error names and class names.
var feathersNames = map[int][2]string{
	http.StatusBadRequest:            {"BadRequest", "bad-request"},
	http.StatusUnauthorized:          {"NotAuthenticated", "not-authenticated"},
	http.StatusForbidden:             {"Forbidden", "forbidden"},
	http.StatusNotFound:              {"NotFound", "not-found"},
	http.StatusConflict:              {"Conflict", "conflict"},
	http.StatusMethodNotAllowed:      {"MethodNotAllowed", "method-not-allowed"},
	http.StatusRequestEntityTooLarge: {"PayloadTooLarge", "payload-too-large"},
	http.StatusUnsupportedMediaType:  {"UnsupportedMediaType", "unsupported-media-type"},
	http.StatusTooManyRequests:       {"TooManyRequests", "too-many-requests"},
	http.StatusInternalServerError:   {"GeneralError", "general-error"},
	http.StatusServiceUnavailable:    {"Unavailable", "unavailable"},
}

func newAPIError(code int, message string) *apiError {
	names, ok := feathersNames[code]
	if !ok {
		names = feathersNames[http.StatusInternalServerError]
	}
	return &apiError{Name: names[0], Message: message, Code: code, ClassName: names[1]}
}

// Errors the endpoint and guard answer with. Every credential or token
// failure is the same 401, so answers reveal nothing about why.
var (
	errInvalidLogin     = func() *apiError { return newAPIError(http.StatusUnauthorized, "Invalid login") }
	errNotAuthenticated = func() *apiError { return newAPIError(http.StatusUnauthorized, "Not authenticated") }
	errStoreDown        = func() *apiError {
		e := newAPIError(http.StatusServiceUnavailable, "Session store unavailable, try again shortly")
		e.retryAfter = 5 * time.Second
		return e
	}
	errServerFault = func() *apiError { return newAPIError(http.StatusInternalServerError, "Internal error") }
)

// errTokenReused is the answer to a refresh token presented after it was spent.
func errTokenReused() *apiError {
	e := newAPIError(http.StatusUnauthorized, "Refresh token reused; the session has been revoked")
	e.Data = map[string]string{"reason": "refresh_token_reused"}
	return e
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(data)
	return err
}

func writeError(w http.ResponseWriter, e *apiError) error {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	return writeJSON(w, e.Code, e)
}
