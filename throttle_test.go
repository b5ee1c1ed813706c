package tokenauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestMemoryFailuresPrune: the memory counter's sweep drops what is over
// (its semantics are in throttle_conformance_test.go, shared with Redis).
func TestMemoryFailuresPrune(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	m := newMemoryFailures()
	m.now = func() time.Time { return now }
	_, _ = m.Fail(ctx, "user:x", "a", time.Minute)
	_ = m.Ban(ctx, "ip:1", 10*time.Minute)
	m.prune(now.Add(time.Minute))
	if len(m.entries) != 1 {
		t.Fatalf("prune kept %d entries, want the ban only", len(m.entries))
	}
	m.prune(now.Add(10 * time.Minute))
	if len(m.entries) != 0 {
		t.Fatalf("prune kept %d entries", len(m.entries))
	}
}

func TestMemoryFailuresBounded(t *testing.T) {
	ctx := context.Background()
	m := newMemoryFailures()
	m.max = 10
	_ = m.Ban(ctx, "user:banned", time.Hour)
	for i := 0; i < 100; i++ {
		_, _ = m.Fail(ctx, fmt.Sprintf("user:%d", i), "ip", time.Hour)
	}
	if len(m.entries) > m.max {
		t.Fatalf("%d entries, bound is %d", len(m.entries), m.max)
	}
	if left, _ := m.Banned(ctx, "user:banned"); left == 0 {
		t.Fatal("making room dropped a ban")
	}
}

// unitHandler is a provisioned-enough handler for calling checkPassword
// directly, with its logs observed.
func unitHandler(t *testing.T, users []User, slots int) (*TokenAuth, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	dir, err := newUserDirectory(users, "", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ta := &TokenAuth{
		users:     dir,
		logger:    zap.New(core),
		throttle:  (*ThrottleConfig)(nil).resolved(),
		hashSlots: newHashSlots(slots),
		realm:     &realmState{failures: newMemoryFailures()},
	}
	return ta, logs
}

func loginRequest(ip string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/authentication", nil)
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

func TestCheckPasswordBusyHashingAnswers503(t *testing.T) {
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "pw")}}, 1)
	ta.hashSlots.acquire(context.Background()) // someone else is hashing
	_, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false)
	apiErr, ok := err.(*apiError)
	if !ok || apiErr.Code != http.StatusServiceUnavailable || apiErr.retryAfter <= 0 {
		t.Fatalf("with every hashing slot taken: %v, want 503 with Retry-After", err)
	}
	if n := ta.users.compares.Load(); n != 0 {
		t.Fatalf("%d hashes computed while busy", n)
	}
	ta.hashSlots.release()
	if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false); err != nil || u == nil {
		t.Fatalf("with a free slot: %v %v", u, err)
	}
}

func TestCheckPasswordBanSkipsHashing(t *testing.T) {
	ta, logs := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "pw")}}, 2)
	for i := 0; i < 5; i++ {
		if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "wrong", false); u != nil || err != nil {
			t.Fatalf("failure %d: %v %v", i+1, u, err)
		}
	}
	before := ta.users.compares.Load()
	_, err := ta.checkPassword(loginRequest("10.0.0.9"), "alice", "pw", false)
	if apiErr, ok := err.(*apiError); !ok || apiErr.Code != http.StatusTooManyRequests {
		t.Fatalf("banned user with the right password: %v, want 429", err)
	}
	if ta.users.compares.Load() != before {
		t.Fatal("a banned login was hashed")
	}
	if logs.FilterMessage("login banned").Len() == 0 {
		t.Fatal("no `login banned` log")
	}
}

func TestThrottleOff(t *testing.T) {
	ta, _ := unitHandler(t, []User{{ID: "alice", Password: testenv.Hash(t, "pw")}}, 2)
	ta.throttle.Off = true
	for i := 0; i < 10; i++ {
		_, _ = ta.checkPassword(loginRequest("10.0.0.1"), "alice", "wrong", false)
	}
	if u, err := ta.checkPassword(loginRequest("10.0.0.1"), "alice", "pw", false); err != nil || u == nil {
		t.Fatalf("throttle off still refused: %v", err)
	}
}

func TestThrottleCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ThrottleConfig
		hashes  int
		wantErr string
	}{
		{in: "throttle 3 1m 2h", want: ThrottleConfig{Failures: 3, Window: caddy.Duration(time.Minute), Ban: caddy.Duration(2 * time.Hour)}},
		{in: "throttle off", want: ThrottleConfig{Off: true}},
		{in: "max_concurrent_hashes 3", hashes: 3},
		{in: "throttle 3 1m", wantErr: "Testfile:2"},
		{in: "throttle x 1m 1m", wantErr: "failures must be a positive"},
		{in: "throttle 0 1m 1m", wantErr: "failures must be a positive"},
		{in: "throttle 3 soon 1m", wantErr: `invalid duration "soon"`},
		{in: "throttle 3 1m -1m", wantErr: `invalid duration "-1m"`},
		{in: "max_concurrent_hashes 0", wantErr: "Testfile:2"},
		{in: "max_concurrent_hashes 2 3", wantErr: "Testfile:2"},
	} {
		ta := new(TokenAuth)
		err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + tc.in + "\n}"))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if tc.hashes != 0 {
			if ta.MaxConcurrentHashes != tc.hashes {
				t.Errorf("%q: max_concurrent_hashes %d", tc.in, ta.MaxConcurrentHashes)
			}
			continue
		}
		if ta.Throttle == nil || *ta.Throttle != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, ta.Throttle, tc.want)
		}
	}
}
