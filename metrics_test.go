package tokenauth

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRegisterMetrics: the collectors go into a registry once however many
// handlers provision (same config), again into a new registry (a reload),
// and a conflicting collector of the same name is an error, not a panic.
func TestRegisterMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	for _, realm := range []string{"a", "a", "b"} {
		if err := registerMetrics(reg, realm); err != nil {
			t.Fatalf("realm %s: %v", realm, err)
		}
	}
	if err := registerMetrics(prometheus.NewPedanticRegistry(), "a"); err != nil {
		t.Fatalf("new registry: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"caddy_token_auth_logins_total", "caddy_token_auth_refreshes_total", "caddy_token_auth_reuse_detections_total", "caddy_token_auth_guard_decisions_total"} {
		if !names[n] {
			t.Errorf("%s not gathered", n)
		}
	}

	clash := prometheus.NewPedanticRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "caddy_token_auth_logins_total", Help: "something else"}))
	err = registerMetrics(clash, "a")
	if err == nil || !strings.Contains(err.Error(), "caddy_token_auth_logins_total") {
		t.Fatalf("conflicting collector: got %v", err)
	}
}
