package tokenauth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// TestSignJSONMatchesGolangJWT: the tokens signJSON makes are byte for
// byte the ones golang-jwt's SignedString made before it (the same header
// and claims JSON, the same signing method), for access and refresh
// tokens, with an HMAC and an Ed25519 key (both deterministic).
func TestSignJSONMatchesGolangJWT(t *testing.T) {
	ed, _, _ := testKeys(t)
	for _, key := range []KeyConfig{{Algorithm: "hs256", Key: testSecret}, {Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}} {
		ts := testService(t, key)
		now := time.Now()
		access := &accessClaims{RegisteredClaims: ts.registered("alice", now, now.Add(time.Hour)), SID: "s1",
			Email: "alice@example.com", Roles: []string{"admin"}, AMR: []string{"pwd"}, Extra: map[string]any{"team": "blue <&>"}}
		refresh := &refreshClaims{RegisteredClaims: ts.registered("alice", now, now.Add(time.Hour)), SID: "s1", Generation: 9}
		for _, c := range []struct {
			typ    string
			claims jwt.Claims
		}{{typAccess, access}, {typRefresh, refresh}} {
			got, err := ts.sign(c.typ, c.claims)
			if err != nil {
				t.Fatal(err)
			}
			tok := jwt.NewWithClaims(ts.keys.signer.method, c.claims)
			tok.Header["typ"] = c.typ
			tok.Header["kid"] = ts.keys.signer.kid
			want, err := tok.SignedString(ts.keys.signer.sign)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s %s:\n got  %s\n want %s", key.Algorithm, c.typ, got, want)
			}
		}
	}
}
