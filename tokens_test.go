package tokenauth

import (
	"strings"
	"testing"
	"time"
)

func TestOversizedTokenRefusedBeforeParsing(t *testing.T) {
	ts := testService(t, KeyConfig{Algorithm: "hs256", Key: testSecret})
	s := Session{ID: "sid", User: "alice", Expires: time.Now().Add(time.Hour), Generation: 1}
	small, _, err := ts.issueAccess(&User{ID: "alice"}, s.ID, s.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.verifyAccess(small); err != nil {
		t.Fatalf("a normal token: %v", err)
	}
	// A correctly signed token, only too large.
	big, _, err := ts.issueAccess(&User{ID: "alice", Claims: map[string]any{"pad": strings.Repeat("x", maxTokenSize)}}, s.ID, s.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if len(big) <= maxTokenSize {
		t.Fatalf("test token is only %d bytes", len(big))
	}
	_, err = ts.verifyAccess(big)
	if err == nil || !strings.Contains(err.Error(), "oversized") {
		t.Fatalf("a %d-byte token: %v, want refused as oversized", len(big), err)
	}
}
