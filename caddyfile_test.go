package tokenauth

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

const testBcrypt = "$2a$04$e2tYtTq0bIh9tDdGGbaZcuXtFfEhLn8.tsPUCNWWoS5LwNqBkQoaW"

// everyOption uses every option of the directive once or more.
const everyOption = `token_auth {
		realm        shop
		endpoint     /auth/
		signing_key  HS256 {env.TOKEN_AUTH_SECRET}
		verify_key   old-key hs256 {env.OLD_SECRET}
		verify_key   older hs256 another-secret-that-is-long-enough-000
		issuer       https://shop.example.com
		audience     shop-api
		access_ttl   5m
		session_ttl  48h
		idle_ttl     2h
		reuse_grace  3s
		user alice ` + testBcrypt + ` {
			email alice@example.com
			name  "Alice Example"
			roles admin editor
			roles viewer
			claim team blue
			claim tier gold
		}
		user bob ` + testBcrypt + `
		user carol
		users_file   /etc/caddy/users.json
		store        bolt /var/lib/caddy/sessions.db
		cookies      off
		login_page   /etc/caddy/login.html
		throttle     3 5m 1h
		max_concurrent_hashes 4
		max_sessions 20
		token_cache  500
		require      role admin
		require      role editor
		require      mfa
		mfa          totp issuer "Example Shop" encryption_key {env.TOTP_KEY}
		passkeys on {
			rp_id             example.com
			rp_name           "Example Shop"
			origins           https://shop.example.com https://example.com
			user_verification required
		}
		dpop         required {
			iat_window 30s
			nonce
		}
	}`

// everyOptionConfig is what everyOption configures.
func everyOptionConfig() TokenAuth {
	grace := caddy.Duration(3 * time.Second)
	cookies := false
	tokenCache := 500
	return TokenAuth{
		Realm:      "shop",
		Endpoint:   "/auth/",
		SigningKey: &KeyConfig{Algorithm: "hs256", Key: "{env.TOKEN_AUTH_SECRET}"},
		VerifyKeys: []KeyConfig{
			{KID: "old-key", Algorithm: "hs256", Key: "{env.OLD_SECRET}"},
			{KID: "older", Algorithm: "hs256", Key: "another-secret-that-is-long-enough-000"},
		},
		Issuer:     "https://shop.example.com",
		Audience:   "shop-api",
		AccessTTL:  caddy.Duration(5 * time.Minute),
		SessionTTL: caddy.Duration(48 * time.Hour),
		IdleTTL:    caddy.Duration(2 * time.Hour),
		ReuseGrace: &grace,
		Users: []User{
			{ID: "alice", Password: testBcrypt, Email: "alice@example.com", Name: "Alice Example",
				Roles: []string{"admin", "editor", "viewer"}, Claims: map[string]any{"team": "blue", "tier": "gold"}},
			{ID: "bob", Password: testBcrypt},
			{ID: "carol"},
		},
		UsersFile:           "/etc/caddy/users.json",
		Store:               &StoreConfig{Backend: "bolt", Path: "/var/lib/caddy/sessions.db"},
		Cookies:             &cookies,
		LoginPage:           "/etc/caddy/login.html",
		Throttle:            &ThrottleConfig{Failures: 3, Window: caddy.Duration(5 * time.Minute), Ban: caddy.Duration(time.Hour)},
		MaxConcurrentHashes: 4,
		MaxSessions:         20,
		TokenCache:          &tokenCache,
		RequireRoles:        []string{"admin", "editor"},
		RequireMFA:          true,
		MFA:                 &MFAConfig{TOTP: &TOTPConfig{Issuer: "Example Shop", EncryptionKey: "{env.TOTP_KEY}"}},
		Passkeys: &PasskeysConfig{RPID: "example.com", RPName: "Example Shop",
			Origins: []string{"https://shop.example.com", "https://example.com"}, UserVerification: "required"},
		DPoP: &DPoPConfig{Mode: "required", IATWindow: caddy.Duration(30 * time.Second), Nonce: true},
	}
}

func TestUnmarshalCaddyfileEveryOption(t *testing.T) {
	var ta TokenAuth
	if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser(everyOption)); err != nil {
		t.Fatal(err)
	}
	if want := everyOptionConfig(); !reflect.DeepEqual(ta, want) {
		got, _ := json.MarshalIndent(ta, "", "  ")
		exp, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("got\n%s\nwant\n%s", got, exp)
	}
}

// TestAdaptEveryOption: every option survives `caddy adapt` into the JSON
// config and back into the handler's config type.
func TestAdaptEveryOption(t *testing.T) {
	cfg := adaptCaddyfile(t, ":8080 {\n"+strings.Replace(everyOption, "token_auth {", "token_auth /api/* {", 1)+"\n}\n")
	routes := siteRoutes(t, cfg)
	var route struct {
		Match  []map[string][]string `json:"match"`
		Handle []json.RawMessage     `json:"handle"`
	}
	raw, _ := json.Marshal(routes[0])
	if err := json.Unmarshal(raw, &route); err != nil {
		t.Fatal(err)
	}
	// the endpoint option moves the ORed path matcher with it
	wantMatch := []map[string][]string{{"path": {"/api/*"}}, {"path": {"/auth", "/auth/*"}}}
	if !reflect.DeepEqual(route.Match, wantMatch) {
		t.Fatalf("match %v, want %v", route.Match, wantMatch)
	}
	var handler struct {
		Handler string `json:"handler"`
		TokenAuth
	}
	dec := json.NewDecoder(strings.NewReader(string(route.Handle[0])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&handler); err != nil {
		t.Fatal(err)
	}
	if want := everyOptionConfig(); handler.Handler != "token_auth" || !reflect.DeepEqual(handler.TokenAuth, want) {
		t.Fatalf("adapted handler:\n%s", route.Handle[0])
	}
}

func TestUnmarshalCaddyfileStoresAndDefaults(t *testing.T) {
	for input, want := range map[string]*StoreConfig{
		"store bolt":   {Backend: "bolt"},
		"store memory": {Backend: "memory"},
		"":             nil,
	} {
		var ta TokenAuth
		if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + input + "\n}")); err != nil {
			t.Fatalf("%q: %v", input, err)
		}
		if !reflect.DeepEqual(ta.Store, want) {
			t.Fatalf("%q: %+v", input, ta.Store)
		}
	}
	// reuse_grace 0 is allowed: it disables the grace
	var ta TokenAuth
	if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\nreuse_grace 0\n}")); err != nil || ta.ReuseGrace == nil || *ta.ReuseGrace != 0 {
		t.Fatalf("reuse_grace 0: %v %v", err, ta.ReuseGrace)
	}
	// an empty block and no block at all
	for _, input := range []string{"token_auth", "token_auth {\n}"} {
		var ta TokenAuth
		if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil || !reflect.DeepEqual(ta, TokenAuth{}) {
			t.Fatalf("%q: %v %+v", input, err, ta)
		}
	}
}

// TestUnmarshalCaddyfileErrors: every invalid option fails, naming the
// line (the Dispenser's "Testfile:<line>").
func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ option, want string }{
		{"unknown_thing on", `unknown token_auth option "unknown_thing"`},
		{"realm", "wrong argument count"},
		{"realm a b", "wrong argument count"},
		{"endpoint relative/path", "endpoint must be a path starting with /"},
		{"endpoint", "wrong argument count"},
		{"issuer", "wrong argument count"},
		{"audience a b", "wrong argument count"},
		{"access_ttl soon", `access_ttl: invalid duration "soon"`},
		{"access_ttl 0s", "access_ttl must be positive"},
		{"session_ttl -1h", "session_ttl must be positive"},
		{"idle_ttl", "wrong argument count"},
		{"reuse_grace -1s", `reuse_grace: invalid duration "-1s"`},
		{"reuse_grace later", `reuse_grace: invalid duration "later"`},
		{"signing_key hs256", "signing_key takes an algorithm and a key"},
		{"signing_key hs256 a b", "signing_key takes an algorithm and a key"},
		{"verify_key kid hs256", "verify_key takes a key id (or auto), an algorithm and a key"},
		{"user", "user takes an id and a password hash"},
		{"user alice " + testBcrypt + " extra", "user takes an id and a password hash"},
		{"mfa", "mfa takes `totp [issuer <text>] [encryption_key <base64>]`"},
		{"mfa sms", "mfa takes `totp"},
		{"mfa totp issuer", "mfa takes `totp"},
		{"mfa totp colour blue", `mfa totp: unknown option "colour"`},
		{"require mfa extra", "require takes `role <role...>` or `mfa`"},
		{"passkeys maybe", "passkeys takes on or off"},
		{"passkeys on off", "passkeys takes on or off"},
		{"passkeys {\n user_verification always\n}", "user_verification must be required, preferred or discouraged"},
		{"passkeys {\n rp_id\n}", "wrong argument count"},
		{"passkeys {\n origins\n}", "wrong argument count"},
		{"passkeys {\n origins example.com\n}", `origin "example.com" must be scheme://host[:port]`},
		{"passkeys {\n origins https://example.com/login\n}", "must be scheme://host[:port]"},
		{"passkeys {\n rp_id https://example.com\n}", `rp_id "https://example.com"`},
		{"passkeys {\n attestation direct\n}", `unknown passkeys option "attestation"`},
		{"user alice plaintext", "password must be a bcrypt or argon2id hash"},
		{"user alice " + testBcrypt + " {\n nickname al\n}", `unknown user option "nickname"`},
		{"user alice " + testBcrypt + " {\n email\n}", "wrong argument count"},
		{"user alice " + testBcrypt + " {\n name a b\n}", "wrong argument count"},
		{"user alice " + testBcrypt + " {\n roles\n}", "wrong argument count"},
		{"user alice " + testBcrypt + " {\n claim team\n}", "claim takes a name and a value"},
		{"user alice " + testBcrypt + " {\n claim sub root\n}", `claim "sub" is reserved`},
		{"users_file", "wrong argument count"},
		{"store", "wrong argument count"},
		{"store bolt a b", "store takes `bolt [<path>]`, `redis <url>`, `redis_sentinel <master> <sentinel-url...>`, `redis_cluster <node-url...>` or `memory`"},
		{"store memory extra", "store takes"},
		{"store redis", "store takes"},
		{"store etcd", "store takes"},
		{"require role", "require takes `role <role...>`"},
		{"require group admin", "require takes `role <role...>`"},
		{"max_sessions", "wrong argument count"},
		{"max_sessions 0", `max_sessions must be a positive whole number, got "0"`},
		{"max_sessions -3", `max_sessions must be a positive whole number, got "-3"`},
		{"max_sessions many", `max_sessions must be a positive whole number, got "many"`},
		{"max_concurrent_hashes 0", `max_concurrent_hashes must be a positive whole number, got "0"`},
	} {
		t.Run(c.option, func(t *testing.T) {
			// the bad option sits on line 3, after a valid one
			input := "token_auth {\n\trealm r\n\t" + c.option + "\n}"
			var ta TokenAuth
			err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
			// a block option's error is on the line of the nested option
			line := "Testfile:3"
			if strings.Contains(c.option, "{") {
				line = "Testfile:4"
			}
			if !strings.Contains(err.Error(), line) {
				t.Fatalf("error %q does not name %s", err, line)
			}
		})
	}
	// arguments on the directive itself
	var ta TokenAuth
	if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth extra {\n}")); err == nil || !strings.Contains(err.Error(), "Testfile:1") {
		t.Fatalf("argument after the directive: %v", err)
	}
}

// adaptCaddyfile adapts a whole Caddyfile to JSON as `caddy adapt` does.
// The filename matters: file_server hides the config file by that name.
func adaptCaddyfile(t *testing.T, input string, filename ...string) []byte {
	t.Helper()
	name := "Caddyfile"
	if len(filename) > 0 {
		name = filename[0]
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": name})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") {
			t.Errorf("adapt warning: %s", w)
		}
	}
	return out
}

// siteRoutes returns the routes of the first server's first route's
// subroute, where a site block's directives end up.
func siteRoutes(t *testing.T, cfg []byte) []map[string]any {
	t.Helper()
	var doc struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string           `json:"handler"`
							Routes  []map[string]any `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	for _, srv := range doc.Apps.HTTP.Servers {
		if h := srv.Routes[0].Handle; len(h) > 0 && h[0].Handler == "subroute" {
			return h[0].Routes // a site with a host name
		}
		var all struct {
			Apps struct {
				HTTP struct {
					Servers map[string]struct {
						Routes []map[string]any `json:"routes"`
					} `json:"servers"`
				} `json:"http"`
			} `json:"apps"`
		}
		_ = json.Unmarshal(cfg, &all)
		for _, s := range all.Apps.HTTP.Servers {
			return s.Routes
		}
	}
	t.Fatalf("no server in %s", cfg)
	return nil
}

func TestAdaptCaddyfile(t *testing.T) {
	cfg := adaptCaddyfile(t, `:8080 {
	basic_auth /basic/* {
		bob `+testBcrypt+`
	}
	token_auth /private/* {
		endpoint /auth
		signing_key hs256 {env.TOKEN_AUTH_SECRET}
		access_ttl 5m
		reuse_grace 0
		store memory
	}
	respond "hi"
}`)
	routes := siteRoutes(t, cfg)
	if len(routes) != 3 {
		t.Fatalf("want 3 routes, got %s", cfg)
	}
	// ordered before basic_auth without an `order` line
	first, _ := json.Marshal(routes[0])
	if !strings.Contains(string(first), `"handler":"token_auth"`) {
		t.Fatalf("token_auth is not the first route: %s", first)
	}
	// the matcher is ORed with the endpoint path: two matcher sets
	var route struct {
		Match  []map[string][]string `json:"match"`
		Handle []map[string]any      `json:"handle"`
	}
	if err := json.Unmarshal(first, &route); err != nil {
		t.Fatal(err)
	}
	wantMatch := []map[string][]string{{"path": {"/private/*"}}, {"path": {"/auth", "/auth/*"}}}
	if !reflect.DeepEqual(route.Match, wantMatch) {
		t.Fatalf("match %v, want %v", route.Match, wantMatch)
	}
	h := route.Handle[0]
	if h["endpoint"] != "/auth" || h["access_ttl"] != float64(5*time.Minute) || h["reuse_grace"] != float64(0) ||
		!reflect.DeepEqual(h["signing_key"], map[string]any{"algorithm": "hs256", "key": "{env.TOKEN_AUTH_SECRET}"}) ||
		!reflect.DeepEqual(h["store"], map[string]any{"backend": "memory"}) {
		t.Fatalf("handler config: %v", h)
	}

	// the JSON loads back into the handler's config type unchanged
	raw, _ := json.Marshal(h)
	var ta TokenAuth
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&ta); err != nil || ta.Endpoint != "/auth" || ta.Store.Backend != "memory" {
		t.Fatalf("decoding the adapted handler: %v %+v", err, ta)
	}
}

func TestAdaptCaddyfileWithoutMatcher(t *testing.T) {
	cfg := adaptCaddyfile(t, `:8080 {
	token_auth {
		signing_key hs256 {env.TOKEN_AUTH_SECRET}
	}
	respond "hi"
}`)
	routes := siteRoutes(t, cfg)
	first, _ := json.Marshal(routes[0])
	if strings.Contains(string(first), `"match"`) || !strings.Contains(string(first), `"handler":"token_auth"`) {
		t.Fatalf("without a matcher, token_auth guards everything: %s", first)
	}
}

func TestAdaptCaddyfileErrorNamesLine(t *testing.T) {
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\ttoken_auth {\n\t\taccess_ttl forever\n\t}\n}\n"), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:3") {
		t.Fatalf("error %v, want it to name Caddyfile:3", err)
	}
}

// normalizeJSON re-encodes JSON with sorted keys and fixed indentation.
func normalizeJSON(t *testing.T, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestCaddyJSONExample: caddy.json.example is what `caddy adapt` makes of
// examples/Caddyfile. Regenerate it with
//
//	bin/caddy adapt --config examples/Caddyfile --pretty > caddy.json.example
func TestCaddyJSONExample(t *testing.T) {
	input, err := os.ReadFile("examples/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("caddy.json.example")
	if err != nil {
		t.Fatal(err)
	}
	got, want := normalizeJSON(t, adaptCaddyfile(t, string(input), "examples/Caddyfile")), normalizeJSON(t, example)
	if got != want {
		t.Fatalf("caddy.json.example is out of date; adapting examples/Caddyfile gives:\n%s", got)
	}
	// and it provisions: the example is a working config
	var ta TokenAuth
	routes := siteRoutes(t, []byte(got))
	for _, r := range routes {
		raw, _ := json.Marshal(r)
		if i := strings.Index(string(raw), `"handler":"token_auth"`); i >= 0 {
			var route struct {
				Handle []json.RawMessage `json:"handle"`
			}
			_ = json.Unmarshal(raw, &route)
			if err := json.Unmarshal(route.Handle[0], &ta); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(ta.Users) == 0 {
		t.Fatalf("no token_auth handler with users in the example: %s", got)
	}
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	hash := testenv.Hash(t, "pw")
	for _, tc := range []struct{ name, body, want string }{
		{"unknown option", "realm a\n\tbogus 1", "Testfile:3"},
		{"missing argument", "realm", "Testfile:2"},
		{"bad duration", "realm a\n\naccess_ttl soon", "Testfile:4"},
		{"bad endpoint", "endpoint auth", "Testfile:2"},
		{"signing key args", "signing_key hs256", "Testfile:2"},
		{"user bad hash", "realm a\nuser bob plaintext", "Testfile:3"},
		{"user unknown option", "user bob " + hash + " {\n\tcolour blue\n}", "Testfile:3"},
		{"user reserved claim", "user bob " + hash + " {\n\temail b@x\n\tclaim sub x\n}", "Testfile:4"},
		{"store", "store floppy", "Testfile:2"},
		{"require", "require admin", "Testfile:2"},
		{"throttle", "\nthrottle 1 2", "Testfile:3"},
	} {
		ta := new(TokenAuth)
		err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + tc.body + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

func TestKeysCaddyfile(t *testing.T) {
	ta := new(TokenAuth)
	d := caddyfile.NewTestDispenser(`token_auth {
		signing_key ES256 /etc/caddy/new.pem
		verify_key kid-a ed25519 /etc/caddy/old.pem
		verify_key kid-b RS256 {env.OLD_RSA}
		verify_key auto hs256 {env.OLD_SECRET}
	}`)
	if err := ta.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if want := (&KeyConfig{Algorithm: "es256", Key: "/etc/caddy/new.pem"}); !reflect.DeepEqual(ta.SigningKey, want) {
		t.Fatalf("signing key %+v", ta.SigningKey)
	}
	want := []KeyConfig{
		{KID: "kid-a", Algorithm: "ed25519", Key: "/etc/caddy/old.pem"},
		{KID: "kid-b", Algorithm: "rs256", Key: "{env.OLD_RSA}"},
		{KID: "auto", Algorithm: "hs256", Key: "{env.OLD_SECRET}"},
	}
	if !reflect.DeepEqual(ta.VerifyKeys, want) {
		t.Fatalf("verify keys %+v", ta.VerifyKeys)
	}
	// the JSON config carries them as the JSON API documents them
	data, _ := json.Marshal(ta)
	for _, s := range []string{`"signing_key":{"algorithm":"es256","key":"/etc/caddy/new.pem"}`, `{"algorithm":"ed25519","key":"/etc/caddy/old.pem","kid":"kid-a"}`} {
		if !strings.Contains(string(data), s) {
			t.Fatalf("JSON %s lacks %s", data, s)
		}
	}

	none := new(TokenAuth)
	if err := none.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`token_auth {
		realm r
	}`)); err != nil || none.SigningKey != nil {
		t.Fatalf("no signing_key: %+v, %v", none.SigningKey, err)
	}

	for _, bad := range []string{
		"signing_key ed25519",
		"signing_key ed25519 a b",
		"signing_key ps256 /k.pem",
		"signing_key none x",
		"verify_key kid ed25519",
		"verify_key ed25519 /k.pem",
		"verify_key kid hs512 secret",
		"verify_key kid ed25519 /k.pem extra",
	} {
		err := new(TokenAuth).UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + bad + "\n}"))
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
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

func TestTokenCacheCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"token_cache 500", 500, false},
		{"token_cache 0", 0, false},
		{"token_cache -1", 0, true},
		{"token_cache many", 0, true},
		{"token_cache", 0, true},
		{"token_cache 1 2", 0, true},
	} {
		ta := new(TokenAuth)
		err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + tc.in + "\n}"))
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: want an error", tc.in)
			}
			continue
		}
		if err != nil || ta.TokenCache == nil || *ta.TokenCache != tc.want || ta.tokenCacheSize() != tc.want {
			t.Errorf("%q: err %v, TokenCache %v", tc.in, err, ta.TokenCache)
		}
	}
	if (&TokenAuth{}).tokenCacheSize() != defaultTokenCacheSize {
		t.Error("unset token_cache should give the default size")
	}
}
