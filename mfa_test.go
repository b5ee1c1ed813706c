package tokenauth

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/pquerna/otp/totp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// mfaSite is a provisioned-like handler with `mfa totp`, the throttle on
// and the given store, serving requests in process (a real store: memory,
// or bolt on a file).
type mfaSite struct {
	t   *testing.T
	ta  *TokenAuth
	now time.Time
}

var mfaTestKey = bytes.Repeat([]byte{7}, encryptionKeySize)

func newMFASite(t *testing.T, store Store) *mfaSite {
	t.Helper()
	ta := &TokenAuth{
		Users: []User{{ID: "alice", Password: testenv.Hash(t, "alice-password")}, {ID: "bob", Password: testenv.Hash(t, "bob-password")}},
		MFA:   &MFAConfig{TOTP: &TOTPConfig{Issuer: "Example"}},
	}
	ta.applyDefaults()
	keys, err := newKeyRing(KeyConfig{Algorithm: "hs256", Key: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ta.tokens = newTokenService(keys, ta.Issuer, ta.Audience, time.Duration(ta.AccessTTL))
	ta.logger = zap.NewNop()
	if ta.users, err = newUserDirectory(ta.Users, "", ta.logger); err != nil {
		t.Fatal(err)
	}
	ta.throttle = ta.Throttle.resolved()
	ta.hashSlots = newHashSlots(1)
	if ta.totp, err = newTOTPService("Example", mfaTestKey); err != nil {
		t.Fatal(err)
	}
	ta.realm = &realmState{name: ta.Realm, store: store, revoked: newRevocationSet(), failures: newMemoryFailures()}
	t.Cleanup(func() { _ = store.Close() })
	// the middle of a TOTP step, near the real time (which tokens are checked against)
	s := &mfaSite{t: t, ta: ta, now: time.Now().Truncate(totpPeriod).Add(totpPeriod / 2)}
	ta.now = func() time.Time { return s.now }
	ta.tokens.now = time.Now // tokens are checked against the real clock
	return s
}

// serve sends r through the handler, in front of a page that echoes the
// identity placeholders.
func (s *mfaSite) serve(r *http.Request) *httptest.ResponseRecorder {
	s.t.Helper()
	r, repl := asCaddyRequest(r, "192.0.2.7")
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		amr, _ := repl.GetString("http.auth.user.amr")
		at, _ := repl.GetString("http.auth.user.auth_time")
		_, err := w.Write([]byte("amr=" + amr + " auth_time=" + at))
		return err
	})
	if err := s.ta.ServeHTTP(w, r, next); err != nil {
		s.t.Fatal(err)
	}
	return w
}

// api sends a JSON request, with a Bearer token when one is given.
func (s *mfaSite) api(method, path, bearer string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(method, path, rd)
	r.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := s.serve(r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func (s *mfaSite) passwordLogin(user string) (int, map[string]any) {
	return s.api("POST", "/authentication", "", map[string]string{"strategy": "local", "username": user, "password": user + "-password"})
}

// code is the TOTP code of secret at the site's clock plus offset steps.
func (s *mfaSite) code(secret string, offset int) string {
	s.t.Helper()
	c, err := totp.GenerateCodeCustom(secret, s.now.Add(time.Duration(offset)*totpPeriod), totpOpts)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// enrol sets up TOTP for user (signed in with a password) and returns the
// secret and the recovery codes; the clock moves on a step, so the
// confirming code is not current any more.
func (s *mfaSite) enrol(user string) (secret string, recovery []string) {
	s.t.Helper()
	status, res := s.passwordLogin(user)
	if status != 201 {
		s.t.Fatalf("login of %s before set-up: %d %v", user, status, res)
	}
	access := res["accessToken"].(string)
	status, res = s.api("POST", "/authentication/mfa/totp/setup", access, nil)
	if status != 200 {
		s.t.Fatalf("setup: %d %v", status, res)
	}
	secret = res["secret"].(string)
	uri, _ := url.Parse(res["otpauth_uri"].(string))
	if uri.Scheme != "otpauth" || uri.Host != "totp" || uri.Query().Get("secret") != secret || uri.Query().Get("issuer") != "Example" {
		s.t.Fatalf("otpauth URI %q", uri)
	}
	status, res = s.api("POST", "/authentication/mfa/totp/confirm", access, map[string]string{"code": s.code(secret, 0)})
	if status != 201 {
		s.t.Fatalf("confirm: %d %v", status, res)
	}
	for _, c := range res["recovery_codes"].([]any) {
		recovery = append(recovery, c.(string))
	}
	s.now = s.now.Add(totpPeriod)
	return secret, recovery
}

// mfaToken is the mfa_token of a password login that needs a code.
func (s *mfaSite) mfaToken(user string) string {
	s.t.Helper()
	status, res := s.passwordLogin(user)
	data, _ := res["data"].(map[string]any)
	if status != 401 || data["reason"] != "mfa_required" || data["mfa_token"] == "" || !slices.Equal(toStrings(data["methods"]), []string{"totp"}) {
		s.t.Fatalf("password login of an enrolled user: %d %v", status, res)
	}
	if res["accessToken"] != nil {
		s.t.Fatal("tokens before the second factor")
	}
	return data["mfa_token"].(string)
}

func (s *mfaSite) secondStep(token, field, value string) (int, map[string]any) {
	return s.api("POST", "/authentication", "", map[string]string{"strategy": "totp", "mfa_token": token, field: value})
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func reasonOf(res map[string]any) string {
	data, _ := res["data"].(map[string]any)
	r, _ := data["reason"].(string)
	return r
}

func accessClaimsOf(t *testing.T, ta *TokenAuth, raw string) *accessClaims {
	t.Helper()
	c, err := ta.tokens.verifyAccess(raw)
	if err != nil {
		t.Fatal(err)
	}
	fast, ok := ta.tokens.fastVerifyAccess(raw)
	if !ok || !slices.Equal(fast.AMR, c.AMR) || !fast.AuthTime.Equal(c.AuthTime.Time) {
		t.Fatalf("the fast path reads amr/auth_time otherwise: ok=%v %v %v, parser %v %v", ok, fast.AMR, fast.AuthTime, c.AMR, c.AuthTime)
	}
	return c
}

func TestAMRAndAuthTimeInTokensAndRefresh(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	status, res := s.passwordLogin("bob")
	if status != 201 {
		t.Fatalf("login: %d %v", status, res)
	}
	c := accessClaimsOf(t, s.ta, res["accessToken"].(string))
	if !slices.Equal(c.AMR, []string{"pwd"}) || c.AuthTime == nil || !c.AuthTime.Equal(s.now.Truncate(time.Second)) {
		t.Fatalf("password login: amr %v auth_time %v, want [pwd] %v", c.AMR, c.AuthTime, s.now)
	}
	signedIn := s.now
	s.now = s.now.Add(time.Minute)
	status, res = s.api("POST", "/authentication", "", map[string]string{"action": "refresh", "refresh_token": res["refreshToken"].(string)})
	if status != 201 {
		t.Fatalf("refresh: %d %v", status, res)
	}
	c = accessClaimsOf(t, s.ta, res["accessToken"].(string))
	if !slices.Equal(c.AMR, []string{"pwd"}) || !c.AuthTime.Equal(signedIn.Truncate(time.Second)) {
		t.Fatalf("refreshed: amr %v auth_time %v, want [pwd] %v (the sign-in's)", c.AMR, c.AuthTime, signedIn)
	}
	payload := res["authentication"].(map[string]any)["payload"].(map[string]any)
	if payload["auth_time"] != float64(signedIn.Unix()) {
		t.Errorf("payload auth_time %v", payload["auth_time"])
	}

	r := httptest.NewRequest("GET", "/private", nil)
	r.Header.Set("Authorization", "Bearer "+res["accessToken"].(string))
	w := s.serve(r)
	if want := "amr=pwd auth_time=" + strconv.FormatInt(signedIn.Unix(), 10); w.Code != 200 || w.Body.String() != want {
		t.Errorf("placeholders: %d %q, want %q", w.Code, w.Body, want)
	}
}

func TestTOTPTwoStepLogin(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	secret, _ := s.enrol("alice")

	token := s.mfaToken("alice")
	status, res := s.secondStep(token, "code", s.code(secret, 0))
	if status != 201 {
		t.Fatalf("right code: %d %v", status, res)
	}
	c := accessClaimsOf(t, s.ta, res["accessToken"].(string))
	if !slices.Equal(c.AMR, []string{"pwd", "otp", "mfa"}) || c.AuthTime == nil {
		t.Errorf("two-factor login: amr %v auth_time %v", c.AMR, c.AuthTime)
	}
	if res["authentication"].(map[string]any)["strategy"] != "totp" {
		t.Errorf("strategy %v", res["authentication"])
	}
	// the mfa_token is spent: the next current code does not make another session with it
	s.now = s.now.Add(totpPeriod)
	if status, res := s.secondStep(token, "code", s.code(secret, 0)); status != 401 || reasonOf(res) != "" {
		t.Errorf("mfa_token used twice: %d %v", status, res)
	}
	// amr survives refresh
	status, res = s.api("POST", "/authentication", "", map[string]string{"action": "refresh", "refresh_token": res["refreshToken"].(string)})
	if status != 201 || !slices.Equal(accessClaimsOf(t, s.ta, res["accessToken"].(string)).AMR, []string{"pwd", "otp", "mfa"}) {
		t.Errorf("refresh of a two-factor session: %d %v", status, res)
	}
	// a user without TOTP is not asked for a code
	if status, _ := s.passwordLogin("bob"); status != 201 {
		t.Errorf("bob without TOTP: %d", status)
	}
}

func TestTOTPCodeWindowAndReplay(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	secret, _ := s.enrol("alice")
	s.ta.throttle.Off = true      // this test is about the codes, not the throttle
	s.now = s.now.Add(totpPeriod) // the step before is not the confirming code's

	for _, tc := range []struct {
		offset int
		ok     bool
	}{{-2, false}, {2, false}, {-1, true}, {1, true}, {0, true}} {
		token := s.mfaToken("alice")
		status, res := s.secondStep(token, "code", s.code(secret, tc.offset))
		if (status == 201) != tc.ok {
			t.Errorf("code %+d steps: %d %v, want accepted %v", tc.offset, status, res, tc.ok)
		}
		if !tc.ok && reasonOf(res) != "invalid_code" {
			t.Errorf("code %+d steps: %v", tc.offset, res)
		}
	}
	// each of the three codes was used once: none is accepted again
	for _, offset := range []int{-1, 0, 1} {
		status, res := s.secondStep(s.mfaToken("alice"), "code", s.code(secret, offset))
		if status != 401 || reasonOf(res) != "invalid_code" {
			t.Errorf("replayed code %+d: %d %v", offset, status, res)
		}
	}
	// malformed codes are simply wrong
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if status, _ := s.secondStep(s.mfaToken("alice"), "code", bad); status == 201 {
			t.Errorf("code %q accepted", bad)
		}
	}
}

func TestTOTPWrongCodesAreThrottled(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	secret, _ := s.enrol("alice")
	token := s.mfaToken("alice")
	wrong := s.code(secret, 5)
	for i := 0; i < s.ta.throttle.Failures; i++ {
		if status, res := s.secondStep(token, "code", wrong); status != 401 || reasonOf(res) != "invalid_code" {
			t.Fatalf("wrong code %d: %d %v", i+1, status, res)
		}
	}
	// banned now, even with the right code, and the password login too
	if status, res := s.secondStep(token, "code", s.code(secret, 0)); status != 429 {
		t.Errorf("right code after the ban: %d %v", status, res)
	}
	if status, _ := s.passwordLogin("alice"); status != 429 {
		t.Errorf("password login after the ban: %d", status)
	}
}

// TestTOTPConcurrentWrongCodesAreBounded: a burst of wrong codes sent at
// once is checked at most <failures> times; the rest are 429 unchecked, as
// for passwords (each guess is reserved before it is checked).
func TestTOTPConcurrentWrongCodesAreBounded(t *testing.T) {
	const burst = 50
	gated := &gatedRecords{Store: newMemoryStore()}
	s := newMFASite(t, gated)
	secret, _ := s.enrol("alice")
	token := s.mfaToken("alice")
	wrong := s.code(secret, 5)
	// Every guess that gets as far as reading the enrolment waits there
	// for the others (or briefly, when fewer come), so that any check made
	// before counting would let the whole burst through.
	gated.arm(burst)
	statuses := make(chan int, burst)
	var start, done sync.WaitGroup
	start.Add(1)
	for range burst {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			status, _ := s.secondStep(token, "code", wrong)
			statuses <- status
		}()
	}
	start.Done()
	done.Wait()
	close(statuses)
	checked, throttled := 0, 0
	for status := range statuses {
		switch status {
		case 401:
			checked++
		case 429:
			throttled++
		default:
			t.Errorf("unexpected answer %d", status)
		}
	}
	if checked > s.ta.throttle.Failures || checked+throttled != burst {
		t.Fatalf("%d concurrent wrong codes: %d checked (401), %d throttled (429); want at most %d checked",
			burst, checked, throttled, s.ta.throttle.Failures)
	}
}

// gatedRecords holds each reader of TOTP enrolments, once armed, until n
// readers have come or a short pause has passed.
type gatedRecords struct {
	Store
	mu      sync.Mutex
	n       int
	arrived int
	open    chan struct{}
}

func (g *gatedRecords) arm(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n, g.arrived, g.open = n, 0, make(chan struct{})
}

func (g *gatedRecords) Records(ctx context.Context, kind, owner string) (map[string][]byte, error) {
	g.mu.Lock()
	open := g.open
	if open != nil && kind == totpKind {
		if g.arrived++; g.arrived == g.n {
			close(open)
		}
	}
	g.mu.Unlock()
	if open != nil && kind == totpKind {
		select {
		case <-open:
		case <-time.After(300 * time.Millisecond):
		}
	}
	return g.Store.Records(ctx, kind, owner)
}

func TestMFATokenSingleUseAndExpiring(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	secret, _ := s.enrol("alice")
	if status, _ := s.secondStep("made-up", "code", s.code(secret, 0)); status != 401 {
		t.Errorf("unknown mfa_token: %d", status)
	}
	if status, _ := s.api("POST", "/authentication", "", map[string]string{"strategy": "totp", "code": s.code(secret, 0)}); status != 400 {
		t.Errorf("no mfa_token: %d", status)
	}
	token := s.mfaToken("alice")
	if status, _ := s.api("POST", "/authentication", "", map[string]string{"strategy": "totp", "mfa_token": token, "code": "1", "recovery_code": "x"}); status != 400 {
		t.Errorf("code and recovery_code at once: %d", status)
	}

	defer func(ttl time.Duration) { mfaLoginTTL = ttl }(mfaLoginTTL)
	mfaLoginTTL = 20 * time.Millisecond
	token = s.mfaToken("alice")
	time.Sleep(50 * time.Millisecond) // past its lifetime in the store's own clock
	if status, res := s.secondStep(token, "code", s.code(secret, 0)); status != 401 || reasonOf(res) != "" {
		t.Errorf("expired mfa_token: %d %v", status, res)
	}
}

func TestRecoveryCodesSingleUse(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	_, recovery := s.enrol("alice")
	if len(recovery) != recoveryCodeCount {
		t.Fatalf("%d recovery codes", len(recovery))
	}
	if len(slices.Compact(slices.Sorted(slices.Values(recovery)))) != recoveryCodeCount {
		t.Fatal("recovery codes repeat")
	}
	status, res := s.secondStep(s.mfaToken("alice"), "recovery_code", strings.ToUpper(recovery[3]))
	if status != 201 {
		t.Fatalf("recovery code: %d %v", status, res)
	}
	if amr := accessClaimsOf(t, s.ta, res["accessToken"].(string)).AMR; !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
		t.Errorf("amr %v", amr)
	}
	if status, res := s.secondStep(s.mfaToken("alice"), "recovery_code", recovery[3]); status != 401 || reasonOf(res) != "invalid_code" {
		t.Errorf("recovery code used again: %d %v", status, res)
	}
	if n, _ := recoveryCodesLeft(context.Background(), s.ta.realm.store, "alice"); n != recoveryCodeCount-1 {
		t.Errorf("%d recovery codes left", n)
	}
	// someone else's code is no code
	_, bobs := s.enrol("bob")
	if status, _ := s.secondStep(s.mfaToken("alice"), "recovery_code", bobs[0]); status != 401 {
		t.Errorf("bob's recovery code for alice: %d", status)
	}
}

func TestTOTPSetupAndRemove(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	_, res := s.passwordLogin("alice")
	access := res["accessToken"].(string)
	if status, _ := s.api("POST", "/authentication/mfa/totp/setup", "", nil); status != 401 {
		t.Errorf("setup without a token: %d", status)
	}
	if status, _ := s.api("POST", "/authentication/mfa/totp/confirm", access, map[string]string{"code": "123456"}); status != 400 {
		t.Errorf("confirm without a set-up: %d", status)
	}
	if status, _ := s.api("GET", "/authentication/mfa/totp/setup", access, nil); status != 405 {
		t.Errorf("GET setup: %d", status)
	}
	_, res = s.api("POST", "/authentication/mfa/totp/setup", access, nil)
	secret := res["secret"].(string)
	if status, res := s.api("POST", "/authentication/mfa/totp/confirm", access, map[string]string{"code": s.code(secret, 3)}); status != 401 || reasonOf(res) != "invalid_code" {
		t.Errorf("confirm with a wrong code: %d %v", status, res)
	}
	if status, _ := s.api("POST", "/authentication/mfa/totp/confirm", access, map[string]string{"code": s.code(secret, 0)}); status != 201 {
		t.Fatalf("confirm: %d", status)
	}
	if status, res := s.api("POST", "/authentication/mfa/totp/setup", access, nil); status != 409 || res["name"] != "Conflict" {
		t.Errorf("second setup: %d %v", status, res)
	}
	s.now = s.now.Add(totpPeriod)
	if status, _ := s.api("POST", "/authentication/mfa/totp/remove", access, map[string]string{"code": s.code(secret, 4)}); status != 401 {
		t.Errorf("remove with a wrong code: %d", status)
	}
	if status, _ := s.api("POST", "/authentication/mfa/totp/remove", access, map[string]string{}); status != 400 {
		t.Errorf("remove without a code: %d", status)
	}
	if status, res := s.api("POST", "/authentication/mfa/totp/remove", access, map[string]string{"code": s.code(secret, 0)}); status != 200 || res["removed"] != true {
		t.Fatalf("remove: %d %v", status, res)
	}
	if status, _ := s.passwordLogin("alice"); status != 201 {
		t.Errorf("login after removing TOTP: %d", status)
	}
	if recs, _ := s.ta.realm.store.Records(context.Background(), totpKind, "alice"); len(recs) != 0 {
		t.Errorf("records left after removal: %d", len(recs))
	}
}

// storeBytes is everything a store keeps, as raw bytes.
type storeBytes func() []byte

func TestTOTPSecretEncryptedInBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := openBoltDB(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := newBoltStore(db, "default")
	if err != nil {
		t.Fatal(err)
	}
	checkSecretsSealed(t, st, func() []byte {
		var buf bytes.Buffer
		if err := db.View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&buf); return err }); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	})
}

func TestTOTPSecretEncryptedInRedis(t *testing.T) {
	testenv.SkipShort(t)
	st, err := newRedisStore(testenv.RedisURL(t), "sealed-"+randomID(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	client := st.client
	checkSecretsSealed(t, st, func() []byte {
		ctx := context.Background()
		var buf bytes.Buffer
		keys, err := client.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			buf.WriteString(k + "\n")
			switch client.Type(ctx, k).Val() {
			case "string":
				buf.WriteString(client.Get(ctx, k).Val())
			case "hash":
				for f, v := range client.HGetAll(ctx, k).Val() {
					buf.WriteString(f + "=" + v + "\n")
				}
			case "set":
				buf.WriteString(strings.Join(client.SMembers(ctx, k).Val(), "\n"))
			case "zset":
				buf.WriteString(strings.Join(client.ZRange(ctx, k, 0, -1).Val(), "\n"))
			case "list":
				buf.WriteString(strings.Join(client.LRange(ctx, k, 0, -1).Val(), "\n"))
			}
		}
		return buf.Bytes()
	})
}

// checkSecretsSealed sets TOTP up on st and checks that neither the
// secret (as text or as bytes) nor a recovery code is in what st keeps,
// while the set-up is pending and after it is confirmed.
func checkSecretsSealed(t *testing.T, st Store, raw storeBytes) {
	t.Helper()
	s := newMFASite(t, st)
	_, res := s.passwordLogin("alice")
	access := res["accessToken"].(string)
	_, res = s.api("POST", "/authentication/mfa/totp/setup", access, nil)
	secret := res["secret"].(string)
	secretBytes, err := recoveryEncoding.DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	noneIn := func(when string, needles ...[]byte) {
		t.Helper()
		hay := raw()
		if len(hay) == 0 {
			t.Fatalf("%s: the store holds nothing", when)
		}
		for _, n := range needles {
			if bytes.Contains(bytes.ToLower(hay), bytes.ToLower(n)) {
				t.Errorf("%s: %q readable in the store", when, n)
			}
		}
	}
	noneIn("pending", []byte(secret), secretBytes)
	_, res = s.api("POST", "/authentication/mfa/totp/confirm", access, map[string]string{"code": s.code(secret, 0)})
	needles := [][]byte{[]byte(secret), secretBytes}
	for _, c := range toStrings(res["recovery_codes"]) {
		needles = append(needles, []byte(c), []byte(strings.ReplaceAll(c, "-", "")))
	}
	if len(needles) != 2+2*recoveryCodeCount {
		t.Fatalf("confirm: %v", res)
	}
	noneIn("confirmed", needles...)
	if !bytes.Contains(raw(), []byte("alice")) {
		t.Error("alice's records are not where the test looks")
	}
	// and yet the store's secret works
	s.now = s.now.Add(totpPeriod)
	if status, _ := s.secondStep(s.mfaToken("alice"), "code", s.code(secret, 0)); status != 201 {
		t.Errorf("login with the sealed secret: %d", status)
	}
}

func TestTOTPSecretBoundToUserAndKey(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	s.enrol("alice")
	ctx := context.Background()
	recs, _ := s.ta.realm.store.Records(ctx, totpKind, "alice")
	// alice's record copied onto bob does not open as bob's
	if err := s.ta.realm.store.PutRecord(ctx, totpKind, "bob", totpSecretID, recs[totpSecretID]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ta.totp.checkUserCode(ctx, s.ta.realm.store, "bob", "000000", s.now); err == nil {
		t.Error("a secret sealed for alice opened for bob")
	}
	// another key opens nothing
	other, _ := newTOTPService("", bytes.Repeat([]byte{8}, encryptionKeySize))
	if _, err := other.checkUserCode(ctx, s.ta.realm.store, "alice", "000000", s.now); err == nil {
		t.Error("a secret opened with another key")
	}
}

func TestEncryptionKeyConfig(t *testing.T) {
	for _, bad := range []string{"not base64!", "c2hvcnQ=", strings.Repeat("A", 60)} {
		if _, err := decodeEncryptionKey(bad); err == nil {
			t.Errorf("encryption_key %q accepted", bad)
		}
	}
	good := "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
	key, err := decodeEncryptionKey(good)
	if err != nil || !bytes.Equal(key, mfaTestKey) {
		t.Errorf("encryption_key %q: %v %x", good, err, key)
	}
}

func TestTOTPKeyGeneratedOnceInStorage(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	first, err := loadOrCreateTOTPKey(ctx, storage, "r1", zap.NewNop())
	if err != nil || len(first) != encryptionKeySize {
		t.Fatalf("first: %v %d", err, len(first))
	}
	again, err := loadOrCreateTOTPKey(ctx, storage, "r1", zap.NewNop())
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("second load differs: %v", err)
	}
	other, _ := loadOrCreateTOTPKey(ctx, storage, "r2", zap.NewNop())
	if bytes.Equal(first, other) {
		t.Error("two realms share a TOTP key")
	}
	if !storage.Exists(ctx, "token_auth/r1/totp_key") {
		t.Error("no token_auth/r1/totp_key in storage")
	}
	if err := storage.Store(ctx, "token_auth/r3/totp_key", []byte("broken")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateTOTPKey(ctx, storage, "r3", zap.NewNop()); err == nil || !strings.Contains(err.Error(), "token_auth/r3/totp_key") {
		t.Errorf("broken stored key: %v", err)
	}
}

func TestRequireMFA(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	s.ta.RequireMFA = true
	secret, _ := s.enrol("alice")
	_, bobRes := s.passwordLogin("bob")
	one := bobRes["accessToken"].(string)

	// API: 403 mfa_required
	r := httptest.NewRequest("GET", "/admin/", nil)
	r.Header.Set("Authorization", "Bearer "+one)
	w := s.serve(r)
	var res map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &res)
	if w.Code != 403 || reasonOf(res) != "mfa_required" {
		t.Errorf("one-factor API request: %d %s", w.Code, w.Body)
	}
	// a page load with a one-factor cookie: to the step-up page, and back
	r = httptest.NewRequest("GET", "/admin/?x=1", nil)
	r.Header.Set("Accept", "text/html")
	r.AddCookie(&http.Cookie{Name: accessCookieName, Value: one})
	w = s.serve(r)
	if w.Code != 302 || w.Header().Get("Location") != "/authentication/mfa/step-up?redirect=%2Fadmin%2F%3Fx%3D1" {
		t.Errorf("one-factor navigation: %d %v", w.Code, w.Header())
	}
	// bob has no second factor: the step-up page sends him to set one up
	r = httptest.NewRequest("GET", "/authentication/mfa/step-up?redirect=%2Fadmin%2F", nil)
	r.AddCookie(&http.Cookie{Name: accessCookieName, Value: one})
	if w = s.serve(r); w.Code != 303 || w.Header().Get("Location") != "/authentication/account/mfa?redirect=%2Fadmin%2F" {
		t.Errorf("step-up without a second factor: %d %v", w.Code, w.Header())
	}

	// alice steps up a one-factor session (as made before she set TOTP
	// up): same session, two factors, a new auth_time
	sess, err := s.ta.openSession(httptest.NewRequest("POST", "/authentication", nil), s.ta.users.byID("alice"), []string{"pwd"})
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := s.ta.issuePair(s.ta.users.byID("alice"), sess, "local")
	s.now = s.now.Add(time.Minute)
	stepUp := func(code string) *httptest.ResponseRecorder {
		r := formRequest("POST", "/authentication/mfa/step-up", url.Values{"code": {code}, "redirect": {"/admin/"}},
			&http.Cookie{Name: accessCookieName, Value: pair.AccessToken})
		r.Header.Set("Origin", "http://example.com")
		return s.serve(r)
	}
	if w = stepUp(s.code(secret, 3)); w.Code != 303 || !strings.Contains(w.Header().Get("Location"), "error=invalid_code") {
		t.Errorf("step-up with a wrong code: %d %v", w.Code, w.Header())
	}
	w = stepUp(s.code(secret, 0))
	if w.Code != 303 || w.Header().Get("Location") != "/admin/" {
		t.Fatalf("step-up: %d %v", w.Code, w.Header())
	}
	var stepped string
	for _, c := range w.Result().Cookies() {
		if c.Name == accessCookieName {
			stepped = c.Value
		}
	}
	c := accessClaimsOf(t, s.ta, stepped)
	if c.SID != sess.ID || !slices.Equal(c.AMR, []string{"pwd", "otp", "mfa"}) || !c.AuthTime.Equal(s.now.Truncate(time.Second)) {
		t.Errorf("stepped-up token: sid %s (want %s) amr %v auth_time %v", c.SID, sess.ID, c.AMR, c.AuthTime)
	}
	if after, _ := s.ta.realm.store.Get(context.Background(), sess.ID); after.Generation != sess.Generation {
		t.Errorf("step-up changed the generation: %d -> %d", sess.Generation, after.Generation)
	}
	r = httptest.NewRequest("GET", "/admin/", nil)
	r.Header.Set("Authorization", "Bearer "+stepped)
	if w = s.serve(r); w.Code != 200 || !strings.HasPrefix(w.Body.String(), "amr=pwd,otp,mfa ") {
		t.Errorf("two-factor token: %d %s", w.Code, w.Body)
	}
}

func TestFormLoginGoesToCodePage(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	secret, _ := s.enrol("alice")
	w := s.serve(formRequest("POST", "/authentication", url.Values{"username": {"alice"}, "password": {"alice-password"}, "redirect": {"/private/"}}))
	var mfaCookie *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == mfaCookieName {
			mfaCookie = c
		}
		if c.Name == accessCookieName {
			t.Error("an access cookie before the second factor")
		}
	}
	if w.Code != 303 || w.Header().Get("Location") != "/authentication/mfa?redirect=%2Fprivate%2F" || mfaCookie == nil || !mfaCookie.HttpOnly || mfaCookie.Path != "/authentication" {
		t.Fatalf("form login of an enrolled user: %d %v", w.Code, w.Header())
	}
	page := s.serve(formRequest("GET", "/authentication/mfa?redirect=%2Fprivate%2F", nil, mfaCookie))
	body := page.Body.String()
	if page.Code != 200 || !strings.Contains(body, `autocomplete="one-time-code"`) || !strings.Contains(body, `inputmode="numeric"`) || !strings.Contains(body, `value="/private/"`) {
		t.Errorf("code page: %d %s", page.Code, body)
	}
	if w := s.serve(formRequest("GET", "/authentication/mfa", nil)); w.Code != 303 || !strings.Contains(w.Header().Get("Location"), "error=mfa_expired") {
		t.Errorf("code page without an mfa_token: %d %v", w.Code, w.Header())
	}
	post := func(code string) *httptest.ResponseRecorder {
		return s.serve(formRequest("POST", "/authentication/mfa", url.Values{"code": {code}, "redirect": {"/private/"}}, mfaCookie))
	}
	if w := post(s.code(secret, 4)); w.Code != 303 || w.Header().Get("Location") != "/authentication/mfa?error=invalid_code&redirect=%2Fprivate%2F" {
		t.Errorf("wrong code: %d %v", w.Code, w.Header())
	}
	w = post(s.code(secret, 0))
	if w.Code != 303 || w.Header().Get("Location") != "/private/" {
		t.Fatalf("right code: %d %v", w.Code, w.Header())
	}
	got := map[string]*http.Cookie{}
	for _, c := range w.Result().Cookies() {
		got[c.Name] = c
	}
	if got[accessCookieName] == nil || got[refreshCookieName] == nil || got[mfaCookieName] == nil || got[mfaCookieName].MaxAge >= 0 {
		t.Errorf("cookies after the code: %v", w.Result().Cookies())
	}
	// the spent token sends the browser back to the password
	if w := post(s.code(secret, 1)); w.Code != 303 || !strings.Contains(w.Header().Get("Location"), "error=mfa_expired") {
		t.Errorf("spent mfa_token: %d %v", w.Code, w.Header())
	}
}

func TestAccountPageTOTPSection(t *testing.T) {
	s := newMFASite(t, newMemoryStore())
	page := func(user string) string {
		_, res := s.passwordLogin(user)
		r := httptest.NewRequest("GET", "/authentication/account", nil)
		r.AddCookie(&http.Cookie{Name: accessCookieName, Value: res["accessToken"].(string)})
		w := s.serve(r)
		if w.Code != 200 {
			t.Fatalf("account page of %s: %d %s", user, w.Code, w.Body)
		}
		return w.Body.String()
	}
	if body := page("bob"); !strings.Contains(body, "Authenticator app") || !strings.Contains(body, `action="/authentication/account/mfa/setup"`) {
		t.Errorf("account page without TOTP: %s", body)
	}
	// enrolled: the page says so and offers removal (the password login
	// of an enrolled user needs a code, so sign in through it)
	secret, _ := s.enrol("alice")
	status, res := s.secondStep(s.mfaToken("alice"), "code", s.code(secret, 0))
	if status != 201 {
		t.Fatal(status)
	}
	r := httptest.NewRequest("GET", "/authentication/account", nil)
	r.AddCookie(&http.Cookie{Name: accessCookieName, Value: res["accessToken"].(string)})
	body := s.serve(r).Body.String()
	if !strings.Contains(body, `id="recovery-left">10<`) || !strings.Contains(body, `action="/authentication/account/mfa/remove"`) {
		t.Errorf("account page with TOTP: %s", body)
	}
}
