package tokenauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

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
