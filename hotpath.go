package tokenauth

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// hotPath is what the guard needs on every request, prepared once at
// Provision rather than per request: the guard-decision counters already
// bound to this handler's realm (a CounterVec label lookup hashes both
// labels and takes a lock on every call), and the 401 answer (challenge
// header and JSON body), which depends only on the realm.
//
// A handler that was not provisioned (some unit tests build one by hand)
// has a zero hotPath and falls back to the per-request forms, which give
// the same answers.
type hotPath struct {
	guard [len(guardResultIndex)]prometheus.Counter
	// challenge and challengeInvalid are the WWW-Authenticate values
	// without and with error="invalid_token".
	challenge, challengeInvalid string
	// notAuthenticated is errNotAuthenticated() as JSON.
	notAuthenticated []byte
}

// guardResultIndex numbers guardResults for hotPath.guard.
var guardResultIndex = [...]string{"accepted", "no_token", "invalid_token", "forbidden", "cross_origin", "mfa_required"}

func newHotPath(realm string) (hotPath, error) {
	var h hotPath
	for i, result := range guardResultIndex {
		h.guard[i] = tokenAuthMetrics.guard.WithLabelValues(realm, result)
	}
	h.challenge = bearerChallenge(realm, "")
	h.challengeInvalid = bearerChallenge(realm, "invalid_token")
	body, err := json.Marshal(errNotAuthenticated())
	if err != nil {
		return hotPath{}, err
	}
	h.notAuthenticated = body
	return h, nil
}

// guardCounter is the pre-bound counter of a guard result, or nil.
func (h *hotPath) guardCounter(result string) prometheus.Counter {
	for i, r := range guardResultIndex {
		if r == result {
			return h.guard[i]
		}
	}
	return nil
}

// bearerChallenge is the WWW-Authenticate value of a 401 (RFC 6750).
func bearerChallenge(realm, bearerError string) string {
	challenge := fmt.Sprintf("Bearer realm=%q", realm)
	if bearerError != "" {
		challenge += fmt.Sprintf(", error=%q", bearerError)
	}
	return challenge
}

// refusePrepared writes the prepared 401 for bearerError; it reports false
// when there is no prepared answer for it (not provisioned, or another
// bearer error), and the caller builds the answer itself.
func (h *hotPath) refusePrepared(w http.ResponseWriter, bearerError string) (bool, error) {
	var challenge string
	switch bearerError {
	case "":
		challenge = h.challenge
	case "invalid_token":
		challenge = h.challengeInvalid
	}
	if challenge == "" || h.notAuthenticated == nil {
		return false, nil
	}
	// the same headers as refuse and writeJSON set
	hdr := w.Header()
	hdr.Set("WWW-Authenticate", challenge)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, err := w.Write(h.notAuthenticated)
	return true, err
}
