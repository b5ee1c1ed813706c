package tokenauth

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// The plugin's Prometheus metrics, served by Caddy's `metrics` handler and
// the admin endpoint's /metrics with Caddy's own:
//
//	caddy_token_auth_logins_total{realm,method,result}   method password | passkey; result success | failure | throttled | busy | error
//	caddy_token_auth_refreshes_total{realm,result}       rotated | caught_up | graced | reused | revoked | expired | invalid | error
//	caddy_token_auth_reuse_detections_total{realm}       refresh tokens presented again: the session was revoked
//	caddy_token_auth_guard_decisions_total{realm,result} accepted | no_token | invalid_token | forbidden | cross_origin | mfa_required
//	caddy_token_auth_second_factor_total{realm,method,result} see secondFactorResults
//	caddy_token_auth_sso_codes_total{realm,result}       see ssoResults (sso.go)
//
// The counters are process-wide so they keep counting across config
// reloads; each new config's registry gets them registered once.
var tokenAuthMetrics = struct {
	logins, refreshes, reuse, guard, secondFactor, sso *prometheus.CounterVec
}{
	logins: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "token_auth", Name: "logins_total",
		Help: "Logins at the token_auth endpoint, by method (password, passkey) and result (success, failure: bad credentials, error: server fault).",
	}, []string{"realm", "method", "result"}),
	refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "token_auth", Name: "refreshes_total",
		Help: "Refresh token requests, by result (rotated, caught_up: rotated from a generation the store had lost, graced: racing duplicate within reuse_grace, reused, revoked, expired, invalid, error).",
	}, []string{"realm", "result"}),
	reuse: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "token_auth", Name: "reuse_detections_total",
		Help: "Refresh tokens presented again after their rotation; each revoked its whole session.",
	}, []string{"realm"}),
	guard: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "token_auth", Name: "guard_decisions_total",
		Help: "Guarded requests, by decision (accepted, no_token, invalid_token: bad, expired or revoked, forbidden: missing role, cross_origin, mfa_required: one factor where require mfa is on).",
	}, []string{"realm", "result"}),
	secondFactor: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "token_auth", Name: "second_factor_total",
		Help: "Second-factor events, by method (login: a password login needing one, totp, recovery_code, totp_setup) and result (required, success, failure, replayed, not_enrolled, throttled, invalid_token, enrolled, removed, reset, error).",
	}, []string{"realm", "method", "result"}),
	sso: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "token_auth", Name: "sso_codes_total",
		Help: "Single sign-on codes, by result (issued at the portal, redeemed at a site; refused: invalid_code (unknown or used), expired_code, wrong_site, bad_state, session_ended; error).",
	}, []string{"realm", "result"}),
}

// Result labels that exist from the start (at zero), so dashboards and
// alerts see every series before the first event.
var (
	loginMethods   = []string{"password", "passkey"}
	loginResults   = []string{"success", "failure", "throttled", "busy", "error"}
	refreshResults = []string{"rotated", "caught_up", "graced", "reused", "revoked", "expired", "invalid", "error"}
	guardResults   = guardResultIndex[:]
)

// registerMetrics adds the plugin's collectors to a config's registry.
// Several token_auth handlers share one registry, so a collector already
// registered there is fine.
func registerMetrics(reg prometheus.Registerer, realm string) error {
	m := tokenAuthMetrics
	for _, c := range []*prometheus.CounterVec{m.logins, m.refreshes, m.reuse, m.guard, m.secondFactor, m.sso} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	for _, method := range loginMethods {
		for _, r := range loginResults {
			m.logins.WithLabelValues(realm, method, r)
		}
	}
	for _, r := range refreshResults {
		m.refreshes.WithLabelValues(realm, r)
	}
	for _, r := range guardResults {
		m.guard.WithLabelValues(realm, r)
	}
	m.reuse.WithLabelValues(realm)
	for _, r := range ssoResults {
		m.sso.WithLabelValues(realm, r)
	}
	return nil
}

// countSecondFactor counts a second-factor event (mfa.go, totp.go).
func (ta *TokenAuth) countSecondFactor(method, result string) {
	countSecondFactor(ta.Realm, method, result)
}

func countSecondFactor(realm, method, result string) {
	tokenAuthMetrics.secondFactor.WithLabelValues(realm, method, result).Inc()
}

func (ta *TokenAuth) countLogin(result string) {
	ta.countLoginMethod("password", result)
}

func (ta *TokenAuth) countLoginMethod(method, result string) {
	tokenAuthMetrics.logins.WithLabelValues(ta.Realm, method, result).Inc()
}

func (ta *TokenAuth) countRefresh(result string) {
	tokenAuthMetrics.refreshes.WithLabelValues(ta.Realm, result).Inc()
	if result == "reused" {
		tokenAuthMetrics.reuse.WithLabelValues(ta.Realm).Inc()
	}
}

// loginErrorResult names the metrics result of a login that ended in an
// error before any password verdict: refused by the throttle, turned away
// because every hashing slot was busy, or a server fault.
func loginErrorResult(err error) string {
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		switch apiErr.Code {
		case http.StatusTooManyRequests:
			return "throttled"
		case http.StatusServiceUnavailable:
			return "busy"
		}
	}
	return "error"
}
