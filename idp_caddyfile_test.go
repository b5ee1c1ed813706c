package tokenauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// idpOptions uses every identity_provider option.
const idpOptions = `token_auth {
	identity_provider corp {
		issuer        https://sso.example.com/realms/staff
		client_id     caddy
		client_secret {env.CORP_SECRET}
		scopes        openid email
		label         Example Corp SSO
		allow_domain  example.com partner.example
		allow_email   guest@elsewhere.example
		roles         staff
		roles         viewer
		timeout       5s
	}
	identity_provider gh {
		github https://github.example.com https://github.example.com/api/v3
		client_id     Iv1.abc
		client_secret {env.GH_SECRET}
	}
	identity_provider github {
		github
		client_id x
	}
}`

func idpOptionsConfig() []IdentityProvider {
	return []IdentityProvider{
		{
			Name: "corp", Issuer: "https://sso.example.com/realms/staff", ClientID: "caddy", ClientSecret: "{env.CORP_SECRET}",
			Scopes: []string{"openid", "email"}, Label: "Example Corp SSO",
			AllowDomains: []string{"example.com", "partner.example"}, AllowEmails: []string{"guest@elsewhere.example"},
			Roles: []string{"staff", "viewer"}, Timeout: caddy.Duration(5 * time.Second),
		},
		{
			Name: "gh", GitHub: &GitHubProvider{BaseURL: "https://github.example.com", APIURL: "https://github.example.com/api/v3"},
			ClientID: "Iv1.abc", ClientSecret: "{env.GH_SECRET}",
		},
		{Name: "github", GitHub: &GitHubProvider{}, ClientID: "x"},
	}
}

func TestUnmarshalCaddyfileIdentityProviders(t *testing.T) {
	var ta TokenAuth
	if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser(idpOptions)); err != nil {
		t.Fatal(err)
	}
	if want := idpOptionsConfig(); !reflect.DeepEqual(ta.IdentityProviders, want) {
		got, _ := json.MarshalIndent(ta.IdentityProviders, "", "  ")
		t.Fatalf("got\n%s", got)
	}
}

// TestAdaptIdentityProviders: the options survive `caddy adapt` into the
// JSON config, with the documented field names, and back.
func TestAdaptIdentityProviders(t *testing.T) {
	cfg := adaptCaddyfile(t, ":8080 {\n"+idpOptions+"\n}\n")
	for _, field := range []string{`"identity_providers":[`, `"allow_domains":["example.com","partner.example"]`, `"github":{"api_url":"https://github.example.com/api/v3","base_url":"https://github.example.com"}`, `"timeout":5000000000`} {
		if !strings.Contains(string(cfg), field) {
			t.Errorf("adapted config lacks %s:\n%s", field, cfg)
		}
	}
	routes := siteRoutes(t, cfg)
	raw, _ := json.Marshal(routes[0]["handle"].([]any)[0])
	var handler struct {
		Handler string `json:"handler"`
		TokenAuth
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&handler); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(handler.IdentityProviders, idpOptionsConfig()) {
		t.Fatalf("adapted handler:\n%s", raw)
	}
}

func TestUnmarshalCaddyfileIdentityProviderErrors(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{"identity_provider {\n}", "identity_provider takes a name"},
		{"identity_provider a b {\n}", "identity_provider takes a name"},
		{"identity_provider bad/name {\n issuer https://x\n client_id c\n}", "the name may only hold letters"},
		{"identity_provider p {\n client_id c\n}", "needs `issuer <url>` or `github`"},
		{"identity_provider p {\n issuer https://x\n github\n client_id c\n}", "exclude each other"},
		{"identity_provider p {\n issuer https://x\n}", "client_id is required"},
		{"identity_provider p {\n issuer ftp://x\n client_id c\n}", "issuer must be an http(s) URL"},
		{"identity_provider p {\n issuer\n}", "wrong argument count"},
		{"identity_provider p {\n github a b c\n}", "github takes at most"},
		{"identity_provider p {\n label\n}", "wrong argument count"},
		{"identity_provider p {\n scopes\n}", "wrong argument count"},
		{"identity_provider p {\n timeout soon\n}", `timeout: invalid duration "soon"`},
		{"identity_provider p {\n issuer https://x\n client_id c\n allow_domain a@b.example\n}", "allow_domain takes domains"},
		{"identity_provider p {\n issuer https://x\n client_id c\n allow_email nobody\n}", "allow_email takes addresses"},
		{"identity_provider p {\n colour blue\n}", `unknown identity_provider option "colour"`},
	} {
		t.Run(c.block, func(t *testing.T) {
			var ta TokenAuth
			err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n\t" + c.block + "\n}"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestProvisionIdentityProviderErrors: the JSON config is checked as the
// Caddyfile is.
func TestProvisionIdentityProviderErrors(t *testing.T) {
	for _, c := range []struct {
		ps   []IdentityProvider
		want string
	}{
		{[]IdentityProvider{{Name: "a", GitHub: &GitHubProvider{}, ClientID: "c"}, {Name: "a", GitHub: &GitHubProvider{}, ClientID: "c"}}, "defined twice"},
		{[]IdentityProvider{{Name: "", GitHub: &GitHubProvider{}, ClientID: "c"}}, "the name may only hold"},
		{[]IdentityProvider{{Name: "a", GitHub: &GitHubProvider{}}}, "client_id is required"},
		{[]IdentityProvider{{Name: "a", GitHub: &GitHubProvider{}, ClientID: "c", Timeout: -1}}, "timeout must be positive"},
	} {
		ta := &TokenAuth{IdentityProviders: c.ps}
		if err := ta.provisionIdentityProviders(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.ps, err, c.want)
		}
	}
}
