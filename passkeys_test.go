package tokenauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The site the passkey unit tests play: the RP ID defaults to its host.
const (
	pkSite   = "http://localhost:8080"
	pkSecret = "passkey-test-secret-0123456789abcdef"
)

// passkeyHandler is a provisioned handler with passkeys on, a memory
// store, alice and bob (passwords) and carol (passkey only).
func passkeyHandler(t *testing.T, cfg *PasskeysConfig) (*TokenAuth, *observer.ObservedLogs) {
	t.Helper()
	if cfg == nil {
		cfg = &PasskeysConfig{}
	}
	ta := &TokenAuth{
		Realm:      "pk-" + randomID(), // a realm of its own: its store is not shared with other tests
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: pkSecret},
		Store:      &StoreConfig{Backend: "memory"},
		Users: []User{
			{ID: "alice", Password: testenv.Hash(t, "alice-pw"), Name: "Alice"},
			{ID: "bob", Password: testenv.Hash(t, "bob-pw")},
			{ID: "carol"},
		},
		Passkeys: cfg,
	}
	provisionInProcess(t, ta)
	core, logs := observer.New(zap.DebugLevel)
	ta.logger = zap.New(core)
	return ta, logs
}

// pkRequest is a request to the test site from client IP 10.0.0.1, as
// Caddy's server hands it to the handler.
func pkRequest(method, path, body string, header ...string) *http.Request {
	r := httptest.NewRequest(method, pkSite+path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r, _ = asCaddyRequest(r, "10.0.0.1")
	return r
}

func pkDo(t *testing.T, ta *TokenAuth, method, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	return serveTeapot(t, ta, pkRequest(method, path, body, header...))
}

// passwordAccess signs in with a password and returns the access token.
func passwordAccess(t *testing.T, ta *TokenAuth, user, password string) string {
	t.Helper()
	w := pkDo(t, ta, "POST", "/authentication", `{"strategy":"local","username":"`+user+`","password":"`+password+`"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("password login of %s: %d %s", user, w.Code, w.Body)
	}
	var res authResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	return res.AccessToken
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// registerOptions asks for registration options as the holder of access.
func registerOptions(t *testing.T, ta *TokenAuth, access string) []byte {
	t.Helper()
	w := pkDo(t, ta, "POST", "/authentication/passkeys/register/options", "{}", bearer(access)...)
	if w.Code != http.StatusOK {
		t.Fatalf("register options: %d %s", w.Code, w.Body)
	}
	return w.Body.Bytes()
}

func registerBody(credential json.RawMessage, name string) string {
	body, _ := json.Marshal(map[string]any{"credential": credential, "name": name})
	return string(body)
}

// addPasskey registers a's passkey for the holder of access.
func addPasskey(t *testing.T, ta *TokenAuth, access string, a *softAuthenticator, name string) passkeyInfo {
	t.Helper()
	cred := a.register(registerOptions(t, ta, access), pkSite, "")
	w := pkDo(t, ta, "POST", "/authentication/passkeys/register", registerBody(cred, name), bearer(access)...)
	if w.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	var info passkeyInfo
	if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func loginOptions(t *testing.T, ta *TokenAuth) []byte {
	t.Helper()
	w := pkDo(t, ta, "POST", "/authentication/passkeys/login/options", "")
	if w.Code != http.StatusOK {
		t.Fatalf("login options: %d %s", w.Code, w.Body)
	}
	return w.Body.Bytes()
}

func passkeyLoginBody(credential json.RawMessage) string {
	body, _ := json.Marshal(map[string]any{"strategy": "passkey", "credential": credential})
	return string(body)
}

// signInWith answers fresh login options with a and posts the answer.
func signInWith(t *testing.T, ta *TokenAuth, a *softAuthenticator) *httptest.ResponseRecorder {
	t.Helper()
	return pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(a.sign(loginOptions(t, ta), pkSite).json()))
}

func wantInvalidLogin(t *testing.T, w *httptest.ResponseRecorder, what string) {
	t.Helper()
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"message":"Invalid login"`) {
		t.Fatalf("%s: %d %s, want 401 Invalid login", what, w.Code, w.Body)
	}
}

func TestPasskeyRegisterThenSignIn(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	access := passwordAccess(t, ta, "alice", "alice-pw")

	opts := registerOptions(t, ta, access)
	var creation creationOptions
	if err := json.Unmarshal(opts, &creation); err != nil {
		t.Fatal(err)
	}
	if creation.PublicKey.RP.ID != "localhost" || creation.PublicKey.AuthenticatorSelection.ResidentKey != "required" {
		t.Fatalf("creation options: %s", opts)
	}
	a := newSoftAuthenticator(t)
	cred := a.register(opts, pkSite, "")
	w := pkDo(t, ta, "POST", "/authentication/passkeys/register", registerBody(cred, " Work laptop\x00 "), bearer(access)...)
	if w.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	var info passkeyInfo
	_ = json.Unmarshal(w.Body.Bytes(), &info)
	if info.ID != b64url.EncodeToString(a.credID) || info.Name != "Work laptop" || info.Created == "" {
		t.Fatalf("registered: %s", w.Body)
	}

	// the next registration excludes it
	if err := json.Unmarshal(registerOptions(t, ta, access), &creation); err != nil {
		t.Fatal(err)
	}
	if len(creation.PublicKey.ExcludeCredentials) != 1 || creation.PublicKey.ExcludeCredentials[0].ID != info.ID {
		t.Fatalf("excludeCredentials: %+v", creation.PublicKey.ExcludeCredentials)
	}

	// sign-in options name no credential: discoverable
	successes := testutil.ToFloat64(tokenAuthMetrics.logins.WithLabelValues(ta.Realm, "passkey", "success"))
	lo := loginOptions(t, ta)
	var req requestOptions
	_ = json.Unmarshal(lo, &req)
	if req.PublicKey.RPID != "localhost" || req.PublicKey.AllowCredentials != nil || req.PublicKey.Challenge == "" {
		t.Fatalf("login options: %s", lo)
	}
	w = pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(a.sign(lo, pkSite).json()))
	if w.Code != http.StatusCreated {
		t.Fatalf("passkey login: %d %s", w.Code, w.Body)
	}
	var res authResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	claims, err := ta.tokens.verifyAccess(res.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if res.RefreshToken == "" || res.User["id"] != "alice" || res.Authentication.Strategy != "passkey" {
		t.Fatalf("answer: %s", w.Body)
	}
	if !reflect.DeepEqual(claims.AMR, []string{"hwk", "mfa"}) || claims.AuthTime == nil {
		t.Fatalf("amr %v auth_time %v, want [hwk mfa] and a time", claims.AMR, claims.AuthTime)
	}
	if n := testutil.ToFloat64(tokenAuthMetrics.logins.WithLabelValues(ta.Realm, "passkey", "success")); n != successes+1 {
		t.Fatalf("passkey logins counted %v, want %v", n, successes+1)
	}

	// its refresh keeps amr and auth_time
	w = pkDo(t, ta, "POST", "/authentication", `{"strategy":"refresh","refreshToken":"`+res.RefreshToken+`"}`)
	var refreshed authResult
	_ = json.Unmarshal(w.Body.Bytes(), &refreshed)
	rc, err := ta.tokens.verifyAccess(refreshed.AccessToken)
	if err != nil || !reflect.DeepEqual(rc.AMR, claims.AMR) || !rc.AuthTime.Equal(claims.AuthTime.Time) {
		t.Fatalf("refreshed: %v %+v", err, rc)
	}

	// without user verification, one factor
	a.verifyUser = false
	w = signInWith(t, ta, a)
	_ = json.Unmarshal(w.Body.Bytes(), &res)
	if claims, err = ta.tokens.verifyAccess(res.AccessToken); err != nil || !reflect.DeepEqual(claims.AMR, []string{"hwk"}) {
		t.Fatalf("without UV: %d %s", w.Code, w.Body)
	}

	// a password login says so
	pc, _ := ta.tokens.verifyAccess(passwordAccess(t, ta, "alice", "alice-pw"))
	if !reflect.DeepEqual(pc.AMR, []string{"pwd"}) {
		t.Fatalf("password login amr %v", pc.AMR)
	}

	// listed with its last use
	w = pkDo(t, ta, "GET", "/authentication/passkeys", "", bearer(access)...)
	var list struct{ Passkeys []passkeyInfo }
	_ = json.Unmarshal(w.Body.Bytes(), &list)
	if w.Code != 200 || len(list.Passkeys) != 1 || list.Passkeys[0].LastUsed == "" || list.Passkeys[0].Name != "Work laptop" {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
}

// TestPasskeyRefusals: every way an answer can be wrong is refused with
// the same 401, and the passkey keeps working afterwards.
func TestPasskeyRefusals(t *testing.T) {
	ta, logs := passkeyHandler(t, nil)
	ta.Throttle = &ThrottleConfig{Off: true}
	ta.throttle = ThrottleConfig{Off: true} // counted in TestPasskeyFailuresAreThrottled
	a := newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), a, "key")

	cases := []struct {
		name string
		cred func() json.RawMessage
	}{
		{"wrong origin", func() json.RawMessage { return a.sign(loginOptions(t, ta), "http://evil.localhost:8080").json() }},
		{"wrong RP ID", func() json.RawMessage {
			other := *a
			other.rpID = "evil.example"
			return other.sign(loginOptions(t, ta), pkSite).json()
		}},
		{"unknown challenge", func() json.RawMessage {
			return a.signChallenge(b64url.EncodeToString([]byte("made-up-challenge-123")), pkSite).json()
		}},
		{"tampered signature", func() json.RawMessage {
			s := a.sign(loginOptions(t, ta), pkSite)
			s.signature[len(s.signature)-1] ^= 1
			return s.json()
		}},
		{"tampered authenticator data", func() json.RawMessage {
			s := a.sign(loginOptions(t, ta), pkSite)
			s.authData[len(s.authData)-1] ^= 1 // the counter
			return s.json()
		}},
		{"another user's handle", func() json.RawMessage {
			s := a.sign(loginOptions(t, ta), pkSite)
			s.userHandle = []byte("bob")
			return s.json()
		}},
		{"unknown credential", func() json.RawMessage {
			stranger := newSoftAuthenticator(t)
			stranger.rpID, stranger.userHandle = "localhost", []byte("alice")
			return stranger.sign(loginOptions(t, ta), pkSite).json()
		}},
		{"registration answer", func() json.RawMessage {
			other := *a
			return other.register(loginOptions(t, ta), pkSite, "localhost")
		}},
		{"not a credential", func() json.RawMessage { return json.RawMessage(`{"id":"x"}`) }},
		{"no credential", func() json.RawMessage { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantInvalidLogin(t, pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(c.cred())), c.name)
		})
	}
	if n := logs.FilterMessage("login failed").Len(); n != len(cases) {
		t.Fatalf("%d failures logged, want %d", n, len(cases))
	}

	t.Run("replayed challenge", func(t *testing.T) {
		s := a.sign(loginOptions(t, ta), pkSite)
		if w := pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(s.json())); w.Code != http.StatusCreated {
			t.Fatalf("first use: %d %s", w.Code, w.Body)
		}
		a.counter++
		again := a.signChallenge(string(mustChallenge(t, s.clientData)), pkSite)
		wantInvalidLogin(t, pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(again.json())), "replay")
	})

	t.Run("expired challenge", func(t *testing.T) {
		opts := loginOptions(t, ta)
		ta.now = func() time.Time { return time.Now().Add(passkeyChallengeTTL + time.Second) }
		defer func() { ta.now = time.Now }()
		wantInvalidLogin(t, pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(a.sign(opts, pkSite).json())), "expired")
	})

	t.Run("counter regression", func(t *testing.T) {
		a.counter -= 2 // a clone that fell behind
		s := a.signChallenge(challengeOf(t, loginOptions(t, ta)), pkSite)
		wantInvalidLogin(t, pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(s.json())), "counter regression")
		if logs.FilterMessageSnippet("sign counter went backwards").FilterLevelExact(zap.WarnLevel).Len() != 1 {
			t.Fatal("counter regression not logged as a warning")
		}
		a.counter += 10
	})

	t.Run("removed user", func(t *testing.T) {
		kept := ta.users
		defer func() { ta.users = kept }()
		var err error
		if ta.users, err = newUserDirectory([]User{{ID: "bob", Password: testenv.Hash(t, "bob-pw")}}, "", zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		wantInvalidLogin(t, signInWith(t, ta, a), "removed user")
	})

	// after all that, the passkey still signs in
	if w := signInWith(t, ta, a); w.Code != http.StatusCreated {
		t.Fatalf("after the refusals: %d %s", w.Code, w.Body)
	}
	// never credential material in the logs: client data (base64url of
	// {"type"...), signatures (base64 of an ASN.1 ECDSA signature: MEUCI...)
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "eyJ0eXBl") || strings.Contains(f.String, "MEUCI") || strings.Contains(f.String, "MEQCI") {
				t.Fatalf("credential material in a log line: %s %v", e.Message, f)
			}
		}
	}
}

// challengeOf is the challenge of login options.
func challengeOf(t *testing.T, options []byte) string {
	var opts requestOptions
	if err := json.Unmarshal(options, &opts); err != nil {
		t.Fatal(err)
	}
	return opts.PublicKey.Challenge
}

func mustChallenge(t *testing.T, clientData []byte) []byte {
	var cd struct{ Challenge string }
	if err := json.Unmarshal(clientData, &cd); err != nil {
		t.Fatal(err)
	}
	return []byte(cd.Challenge)
}

// TestPasskeyFailuresAreThrottled: failed passkey sign-ins count against
// the client IP like failed passwords, and a banned IP gets 429.
func TestPasskeyFailuresAreThrottled(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	a := newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), a, "key")
	opts := loginOptions(t, ta) // taken before the ban
	for i := 0; i < ta.throttle.Failures; i++ {
		s := a.sign(loginOptions(t, ta), pkSite)
		s.signature[10] ^= 1
		wantInvalidLogin(t, pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(s.json())), "tampered")
	}
	w := pkDo(t, ta, "POST", "/authentication", passkeyLoginBody(a.sign(opts, pkSite).json()))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d %s, want 429", ta.throttle.Failures, w.Code, w.Body)
	}
	if w := pkDo(t, ta, "POST", "/authentication/passkeys/login/options", ""); w.Code != http.StatusTooManyRequests {
		t.Fatalf("options for a banned client: %d, want 429", w.Code)
	}
}

// TestPasskeyOnlyUser: an account without a password signs in with a
// passkey only; a password attempt costs and answers what an unknown
// user's does.
func TestPasskeyOnlyUser(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	for _, login := range []string{"carol", "nobody"} {
		before := ta.users.compares.Load()
		w := pkDo(t, ta, "POST", "/authentication", `{"strategy":"local","username":"`+login+`","password":""}`)
		wantInvalidLogin(t, w, "password for "+login)
		if ta.users.compares.Load() != before+1 {
			t.Fatalf("%s: %d hash comparisons, want 1", login, ta.users.compares.Load()-before)
		}
	}
	users, err := parseUsersFile([]byte(`{"users":[{"id":"dave","password":""},{"id":"erin"}]}`))
	if err != nil || len(users) != 2 || users[0].Password != "" {
		t.Fatalf("users file with passkey-only users: %v %v", users, err)
	}
}

// TestPasskeyRemoval: the JSON API removes one's own passkeys, and the
// last one of a passkey-only account only with force.
func TestPasskeyRemoval(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	alice := passwordAccess(t, ta, "alice", "alice-pw")
	a := newSoftAuthenticator(t)
	info := addPasskey(t, ta, alice, a, "key")

	// bob cannot see or remove it
	bob := passwordAccess(t, ta, "bob", "bob-pw")
	if w := pkDo(t, ta, "DELETE", "/authentication/passkeys/"+info.ID, "", bearer(bob)...); w.Code != http.StatusNotFound {
		t.Fatalf("bob removing alice's passkey: %d %s", w.Code, w.Body)
	}
	if w := pkDo(t, ta, "DELETE", "/authentication/passkeys/"+info.ID, "", bearer(alice)...); w.Code != http.StatusOK {
		t.Fatalf("removing: %d %s", w.Code, w.Body)
	}
	wantInvalidLogin(t, signInWith(t, ta, a), "removed passkey")

	// carol (no password) gets her passkey by invitation
	c := newSoftAuthenticator(t)
	carolAccess := inviteAndRegister(t, ta, "carol", c)
	list := pkDo(t, ta, "GET", "/authentication/passkeys", "", "Authorization", "Bearer "+carolAccess)
	var got struct{ Passkeys []passkeyInfo }
	_ = json.Unmarshal(list.Body.Bytes(), &got)
	if len(got.Passkeys) != 1 {
		t.Fatalf("carol's passkeys: %s", list.Body)
	}
	id := got.Passkeys[0].ID
	w := pkDo(t, ta, "DELETE", "/authentication/passkeys/"+id, "", bearer(carolAccess)...)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "last_passkey") {
		t.Fatalf("removing carol's last passkey: %d %s, want 409", w.Code, w.Body)
	}
	if w := signInWith(t, ta, c); w.Code != http.StatusCreated {
		t.Fatalf("the refused removal removed it: %d", w.Code)
	}
	if w := pkDo(t, ta, "DELETE", "/authentication/passkeys/"+id+"?force=true", "", bearer(carolAccess)...); w.Code != http.StatusOK {
		t.Fatalf("forced removal: %d %s", w.Code, w.Body)
	}
	wantInvalidLogin(t, signInWith(t, ta, c), "carol's removed passkey")
}

// TestPasskeyRegistrationRefusals: a registration answer is accepted only
// for the ceremony its user and session began, at this origin and RP ID.
func TestPasskeyRegistrationRefusals(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	alice := passwordAccess(t, ta, "alice", "alice-pw")
	bob := passwordAccess(t, ta, "bob", "bob-pw")
	refused := func(t *testing.T, w *httptest.ResponseRecorder) {
		t.Helper()
		if w.Code != http.StatusBadRequest {
			t.Fatalf("%d %s, want 400", w.Code, w.Body)
		}
	}
	register := func(access string, cred json.RawMessage) *httptest.ResponseRecorder {
		return pkDo(t, ta, "POST", "/authentication/passkeys/register", registerBody(cred, "k"), bearer(access)...)
	}
	t.Run("another user's challenge", func(t *testing.T) {
		refused(t, register(bob, newSoftAuthenticator(t).register(registerOptions(t, ta, alice), pkSite, "")))
	})
	t.Run("another session's challenge", func(t *testing.T) {
		other := passwordAccess(t, ta, "alice", "alice-pw")
		refused(t, register(alice, newSoftAuthenticator(t).register(registerOptions(t, ta, other), pkSite, "")))
	})
	t.Run("wrong origin", func(t *testing.T) {
		refused(t, register(alice, newSoftAuthenticator(t).register(registerOptions(t, ta, alice), "http://evil.localhost:8080", "")))
	})
	t.Run("wrong RP ID", func(t *testing.T) {
		refused(t, register(alice, newSoftAuthenticator(t).register(registerOptions(t, ta, alice), pkSite, "evil.example")))
	})
	t.Run("replayed challenge", func(t *testing.T) {
		opts := registerOptions(t, ta, alice)
		if w := register(alice, newSoftAuthenticator(t).register(opts, pkSite, "")); w.Code != http.StatusCreated {
			t.Fatalf("first: %d %s", w.Code, w.Body)
		}
		refused(t, register(alice, newSoftAuthenticator(t).register(opts, pkSite, "")))
	})
	t.Run("expired challenge", func(t *testing.T) {
		opts := registerOptions(t, ta, alice)
		ta.now = func() time.Time { return time.Now().Add(passkeyChallengeTTL + time.Second) }
		defer func() { ta.now = time.Now }()
		refused(t, register(alice, newSoftAuthenticator(t).register(opts, pkSite, "")))
	})
	t.Run("not signed in", func(t *testing.T) {
		w := pkDo(t, ta, "POST", "/authentication/passkeys/register/options", "{}")
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("%d", w.Code)
		}
	})
	t.Run("cookie from another site", func(t *testing.T) {
		r := pkRequest("POST", "/authentication/passkeys/register/options", "{}", "Origin", "https://evil.example")
		r.AddCookie(&http.Cookie{Name: accessCookieName, Value: alice})
		if w := serveTeapot(t, ta, r); w.Code != http.StatusForbidden {
			t.Fatalf("%d", w.Code)
		}
	})
}

// TestPasskeyRPIDBinding: a passkey registered under one RP ID never signs
// in on a site with another, though both share the realm's store.
func TestPasskeyRPIDBinding(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	a := newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), a, "key")

	const other = "http://other.test:8080"
	r := httptest.NewRequest("POST", other+"/authentication/passkeys/login/options", nil)
	w := serveTeapot(t, ta, r)
	if w.Code != 200 {
		t.Fatalf("options on the other host: %d %s", w.Code, w.Body)
	}
	s := a.sign(w.Body.Bytes(), other) // the browser would not even offer it
	r = pkRequest("POST", "/authentication", passkeyLoginBody(s.json()))
	r.Host, r.URL.Host = "other.test:8080", "other.test:8080"
	wantInvalidLogin(t, serveTeapot(t, ta, r), "other RP ID")
}

func TestPasskeyConfigDefaultsPerHost(t *testing.T) {
	ta, _ := passkeyHandler(t, &PasskeysConfig{RPName: "Shop"})
	rp, err := ta.relyingParty(httptest.NewRequest("GET", "http://Shop.Example:8443/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if rp.Config.RPID != "shop.example" || rp.Config.RPDisplayName != "Shop" || !reflect.DeepEqual(rp.Config.RPOrigins, []string{"http://shop.example:8443"}) {
		t.Fatalf("config %+v", rp.Config)
	}
	again, _ := ta.relyingParty(httptest.NewRequest("GET", "http://shop.example:8443/x", nil))
	if again != rp {
		t.Fatal("the configuration of a host is not cached")
	}
	for i := 0; i < 2*maxRelyingParties; i++ {
		_, _ = ta.relyingParty(httptest.NewRequest("GET", "http://h"+randomID()[:6]+".example/", nil))
	}
	if n := len(ta.relyingParties.all); n > maxRelyingParties {
		t.Fatalf("%d configurations cached", n)
	}

	fixed, _ := passkeyHandler(t, &PasskeysConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}, UserVerification: "required"})
	rp, _ = fixed.relyingParty(httptest.NewRequest("GET", "http://other.example.com/", nil))
	if rp.Config.RPID != "example.com" || !reflect.DeepEqual(rp.Config.RPOrigins, []string{"https://login.example.com"}) || rp.Config.RPDisplayName != fixed.Realm {
		t.Fatalf("configured %+v", rp.Config)
	}
}

// TestPasskeysOff: without passkeys, none of their routes or strategy exist.
func TestPasskeysOff(t *testing.T) {
	ta, _ := passkeyHandler(t, &PasskeysConfig{Off: true})
	for _, path := range []string{"/authentication/passkeys/login/options", "/authentication/passkeys.js"} {
		if w := pkDo(t, ta, "POST", path, "{}"); w.Code != http.StatusNotFound {
			t.Fatalf("%s: %d", path, w.Code)
		}
	}
	w := pkDo(t, ta, "POST", "/authentication", `{"strategy":"passkey","credential":{}}`)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "no valid strategy") {
		t.Fatalf("passkey strategy with passkeys off: %d %s", w.Code, w.Body)
	}
	page := pkDo(t, ta, "GET", "/authentication", "", "Accept", "text/html")
	if strings.Contains(page.Body.String(), "passkey") {
		t.Fatal("the login page offers passkeys while they are off")
	}
}

// TestLoginPageOffersPasskeys: the built-in page has the button, autofill
// and the endpoint's script, under a CSP that allows only that script.
func TestLoginPageOffersPasskeys(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	w := pkDo(t, ta, "GET", "/authentication?redirect=/private/", "", "Accept", "text/html")
	body := w.Body.String()
	for _, want := range []string{`id="passkey-button"`, "Sign in with a passkey", `autocomplete="username webauthn"`,
		`<script src="/authentication/passkeys.js" data-endpoint="/authentication" defer></script>`} {
		if !strings.Contains(body, want) {
			t.Fatalf("login page lacks %s", want)
		}
	}
	if strings.Count(body, "<script") != 1 {
		t.Fatal("the login page has inline script")
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline'; script") || strings.Contains(csp, "script-src 'self' 'unsafe") {
		t.Fatalf("CSP %q", csp)
	}
	js := pkDo(t, ta, "GET", "/authentication/passkeys.js", "")
	if js.Code != 200 || js.Header().Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(js.Body.String(), "isConditionalMediationAvailable") {
		t.Fatalf("script: %d %v", js.Code, js.Header())
	}
	cached := pkDo(t, ta, "GET", "/authentication/passkeys.js", "", "If-None-Match", js.Header().Get("ETag"))
	if cached.Code != http.StatusNotModified {
		t.Fatalf("script revalidation: %d", cached.Code)
	}

	// a failed passkey sign-in lands back on the page, saying so
	form := url.Values{"strategy": {"passkey"}, "credential": {`{"id":"x"}`}, "redirect": {"/private/"}}
	r := pkRequest("POST", "/authentication", form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "Origin", pkSite)
	w = serveTeapot(t, ta, r)
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || !strings.Contains(loc, "error=passkey_failed") || !strings.Contains(loc, "redirect=%2Fprivate%2F") {
		t.Fatalf("failed form sign-in: %d %s", w.Code, loc)
	}
}

// TestPasskeyFormSignIn: the login page's script posts the passkey's
// answer as a form, which sets the cookies and goes on, as a password does.
func TestPasskeyFormSignIn(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	a := newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), a, "key")
	form := url.Values{"strategy": {"passkey"}, "credential": {string(a.sign(loginOptions(t, ta), pkSite).json())}, "redirect": {"/private/"}}
	r := pkRequest("POST", "/authentication", form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "Origin", pkSite)
	w := serveTeapot(t, ta, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/private/" || len(w.Result().Cookies()) != 2 {
		t.Fatalf("form sign-in: %d %v", w.Code, w.Header())
	}
}

// A passkey sign-in with user verification is two factors (amr hwk, mfa)
// and passes `require mfa`; one without is a single factor (hwk): 403
// mfa_required.
func TestPasskeySessionAndRequireMFA(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	a := newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), a, "key")
	ta.RequireMFA = true
	for _, tc := range []struct {
		verifyUser bool
		amr        []string
		status     int
	}{
		{true, []string{"hwk", "mfa"}, http.StatusTeapot}, // the guarded handler answered
		{false, []string{"hwk"}, http.StatusForbidden},
	} {
		a.verifyUser = tc.verifyUser
		w := signInWith(t, ta, a)
		if w.Code != http.StatusCreated {
			t.Fatalf("passkey sign-in (uv=%v): %d %s", tc.verifyUser, w.Code, w.Body)
		}
		var res authResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		if c, err := ta.tokens.verifyAccess(res.AccessToken); err != nil || !reflect.DeepEqual(c.AMR, tc.amr) {
			t.Fatalf("uv=%v: amr %v (%v), want %v", tc.verifyUser, c.AMR, err, tc.amr)
		}
		w = pkDo(t, ta, "GET", "/admin/", "", bearer(res.AccessToken)...)
		if w.Code != tc.status || (tc.status == http.StatusForbidden && !strings.Contains(w.Body.String(), `"reason":"mfa_required"`)) {
			t.Errorf("guarded request with a passkey session (uv=%v): %d %s, want %d", tc.verifyUser, w.Code, w.Body, tc.status)
		}
	}
}
