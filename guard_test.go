package tokenauth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestHotPathRefusalMatchesUnprepared: the 401 a provisioned guard writes
// from its prepared answer (no token; an invalid token) is the one an
// unprovisioned handler builds per request: same status, challenge,
// headers and body, for a realm that needs quoting.
func TestHotPathRefusalMatchesUnprepared(t *testing.T) {
	realm := `hot "path" realm`
	ta := hs256Config(realm, User{ID: "alice", Password: testenv.Hash(t, "pw")})
	provisionInProcess(t, ta)
	if ta.hot.notAuthenticated == nil || ta.hot.challenge == "" {
		t.Fatal("Provision prepared no 401 answer")
	}
	unprepared := &TokenAuth{Realm: realm}
	for _, c := range []struct{ name, bearerError, auth string }{
		{"no token", "", ""},
		{"invalid token", "invalid_token", "Bearer not.a.token"},
	} {
		var header []string
		if c.auth != "" {
			header = []string{"Authorization", c.auth}
		}
		got := serve(t, ta, http.MethodGet, "/private", "", header...)
		want := httptest.NewRecorder()
		if done, _ := unprepared.hot.refusePrepared(want, c.bearerError); done {
			t.Fatal("an unprovisioned handler has a prepared answer")
		}
		if err := unprepared.refuse(want, c.bearerError); err != nil {
			t.Fatal(err)
		}
		if got.Code != http.StatusUnauthorized || got.Code != want.Code {
			t.Errorf("%s: status %d, unprepared %d", c.name, got.Code, want.Code)
		}
		for _, h := range []string{"WWW-Authenticate", "Content-Type", "Cache-Control"} {
			if g, w := got.Header().Values(h), want.Header().Values(h); len(g) != 1 || len(w) != 1 || g[0] != w[0] {
				t.Errorf("%s: %s = %q, unprepared %q", c.name, h, g, w)
			}
		}
		if got.Body.String() != want.Body.String() {
			t.Errorf("%s: body %s, unprepared %s", c.name, got.Body, want.Body)
		}
	}
}

// TestHotPathGuardCounters: the guard counts its decisions on counters
// bound to the realm at Provision, which are the realm's series of
// caddy_token_auth_guard_decisions_total.
func TestHotPathGuardCounters(t *testing.T) {
	realm := "hot-path-counters-" + randomID()
	ta := hs256Config(realm, User{ID: "alice", Password: testenv.Hash(t, "pw")})
	provisionInProcess(t, ta)
	for _, result := range guardResults {
		if c := ta.hot.guardCounter(result); c == nil || c != tokenAuthMetrics.guard.WithLabelValues(realm, result) {
			t.Fatalf("%s: no counter bound to the realm's series", result)
		}
	}
	if ta.hot.guardCounter("no such result") != nil {
		t.Fatal("a counter for an unknown result")
	}
	tok, _, err := ta.tokens.issueAccess(ta.users.byID("alice"), randomID(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ta, http.MethodGet, "/private", "")
	serve(t, ta, http.MethodGet, "/private", "", "Authorization", "Bearer "+tok)
	serve(t, ta, http.MethodGet, "/private", "", "Authorization", "Bearer "+tok)
	got := guardDecisions(t, realm)
	for result, want := range map[string]float64{"no_token": 1, "accepted": 2, "invalid_token": 0} {
		if got[result] != want {
			t.Errorf("%s: %v, want %v", result, got[result], want)
		}
	}
}

// guardDecisions gathers caddy_token_auth_guard_decisions_total of a realm
// by result.
func guardDecisions(t *testing.T, realm string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tokenAuthMetrics.guard)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["realm"] == realm {
				out[labels["result"]] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestOversizedToken: tokens over 8 KiB are refused before any parsing.
func TestOversizedToken(t *testing.T) {
	ta := hs256Config("oversized-test")
	provisionInProcess(t, ta)
	huge := "eyJ" + strings.Repeat("A", maxTokenSize)
	if w := serve(t, ta, "GET", "/x", "", "Authorization", "Bearer "+huge); w.Code != http.StatusUnauthorized {
		t.Fatalf("guard: %d", w.Code)
	}
	if _, err := ta.tokens.verifyAccess(huge); err == nil || !strings.Contains(err.Error(), "oversized") {
		t.Fatalf("verifyAccess: %v", err)
	}
}

// TestGuardPlaceholdersWhichValueWins: the guard's identity placeholders
// (a Replacer provider, set lazily) win over values an earlier handler Set
// under their names, lose to values a later handler Sets, and a second
// guard on the same request wins over the first, as when the guard Set
// every value itself.
func TestGuardPlaceholdersWhichValueWins(t *testing.T) {
	ts, _ := newTestTokens(t, 100)
	ta := guardFor(ts)
	alice := mintAccess(t, ts, testUser, "s1")
	bob := mintAccess(t, ts, &User{ID: "bob", Email: "bob@example.com"}, "s2")
	serve := func(ta *TokenAuth, r *http.Request, next caddyhttp.Handler) {
		t.Helper()
		if err := ta.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
	}
	want := func(repl *caddy.Replacer, name, value string) {
		t.Helper()
		if got, _ := repl.GetString("http.auth.user." + name); got != value {
			t.Errorf("{http.auth.user.%s} = %q, want %q", name, got, value)
		}
	}
	for i := range 2 { // a miss, then a cache hit
		t.Run(fmt.Sprintf("earlier handler, request %d", i), func(t *testing.T) {
			r, repl := guardedRequest(alice)
			repl.Set("http.auth.user.id", "basic-auth-user") // caddyauth, say
			repl.Set("http.auth.user.team", "red")
			serve(ta, r, new(countingHandler))
			want(repl, "id", "alice")
			want(repl, "team", "blue")

			r, repl = guardedRequest(alice)
			repl.Set("http.auth.user.email", "earlier@example.com") // no id
			serve(ta, r, new(countingHandler))
			want(repl, "email", "alice@example.com")
			want(repl, "id", "alice")

			// the earlier identity is replaced as a whole: a value the
			// token has no claim for does not stay and mix with alice's
			// (as Caddy serves it: a request with Caddy's variables)
			r, repl = guardedRequest(alice)
			r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), &caddyhttp.Server{})
			repl.Set("http.auth.user.id", "basic-auth-user")
			repl.Set("http.auth.user.department", "sales")
			repl.Set("http.request.other", "kept")
			serve(ta, r, new(countingHandler))
			want(repl, "id", "alice")
			if v, known := repl.Get("http.auth.user.department"); known {
				t.Errorf("{http.auth.user.department} = %v from the earlier identity, want it gone", v)
			}
			if v, _ := repl.GetString("http.request.other"); v != "kept" {
				t.Errorf("a value outside http.auth.user. was removed: %q", v)
			}
		})
	}
	t.Run("later handler", func(t *testing.T) {
		r, repl := guardedRequest(alice)
		serve(ta, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			repl.Set("http.auth.user.email", "later@example.com")
			return nil
		}))
		want(repl, "email", "later@example.com")
		want(repl, "name", "Alice")
	})
	for _, caddyServed := range []bool{true, false} { // with Caddy's request variables, and without
		t.Run(fmt.Sprintf("second guard, as Caddy serves it %v", caddyServed), func(t *testing.T) {
			r, repl := guardedRequest(alice)
			if caddyServed {
				r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), &caddyhttp.Server{})
			}
			serve(ta, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				r.Header.Set("Authorization", "Bearer "+bob)
				return ta.ServeHTTP(w, r, new(countingHandler))
			}))
			want(repl, "id", "bob")
			want(repl, "sid", "s2")
			want(repl, "email", "bob@example.com")
			want(repl, "roles", "")
			want(repl, "team", "blue") // alice's custom claim, which bob's token does not override
		})
	}
	t.Run("unknown names", func(t *testing.T) {
		r, repl := guardedRequest(alice)
		serve(ta, r, new(countingHandler))
		if _, known := repl.Get("http.auth.user.nope"); known {
			t.Error("a claim the token does not have is a known placeholder")
		}
		want(repl, "amr", "")
		want(repl, "auth_time", "")
		want(repl, "cnf_jkt", "")
		want(repl, "level", "3")
		want(repl, "roles", "admin,dev")
	})
}
