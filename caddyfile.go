package tokenauth

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The token_auth directive. Every option is optional; `user`, `verify_key`
// and `require` may repeat. The whole syntax:
//
//	token_auth [<matcher>] {
//	    realm        <name>
//	    endpoint     <path>
//
//	    signing_key  hs256 <secret>
//	    signing_key  ed25519|es256|rs256 <pem-file>
//	    verify_key   <kid>|auto hs256|ed25519|es256|rs256 <secret-or-pem-file>
//
//	    issuer       <string>
//	    audience     <string>
//	    access_ttl   <duration>
//	    session_ttl  <duration>
//	    idle_ttl     <duration>
//	    reuse_grace  <duration>
//
//	    user <id> [<password-hash>] [{     # no hash: signs in with a passkey only
//	        email <email>
//	        name  <name>
//	        roles <role...>
//	        claim <name> <value>
//	    }]
//	    users_file   <path>
//
//	    store bolt [<path>]
//	    store redis <url>
//	    store redis_sentinel <master> <sentinel-url...>
//	    store redis_cluster <node-url...>
//	    store memory
//
//	    cookies      on|off
//	    login_page   <template-file>
//	    require role <role...>
//	    require mfa
//	    mfa totp [issuer <text>] [encryption_key <base64>]
//	    throttle     <failures> <window> <ban> | off
//	    max_concurrent_hashes <n>    # per realm
//	    max_sessions <n>             # live sessions per user; default 100
//	    token_cache  <entries>
//
//	    identity_provider <name> {     # repeatable
//	        issuer        <url>        # OpenID Connect; or:
//	        github        [<base_url> [<api_url>]]
//	        client_id     <id>
//	        client_secret <secret>
//	        scopes        <scope...>
//	        label         <text...>
//	        allow_domain  <domain...>
//	        allow_email   <address...>
//	        roles         <role...>
//	        timeout       <duration>
//	    }
//
//	    passkeys [on|off] [{
//	        rp_id             <domain>
//	        rp_name           <text>
//	        origins           <origin...>
//	        user_verification required|preferred|discouraged
//	    }]
//	    dpop         off|optional|required [{
//	        iat_window <duration>
//	        nonce
//	    }]
//	    sso {                          # the same block on every directive of the realm
//	        portal <origin>
//	        sites  <origin...>
//	    }
//	}
//
// The fields of TokenAuth say what each option means and its
// default.

// parseCaddyfile sets up the handler from Caddyfile tokens. The route it
// makes matches the directive's matcher OR the endpoint path, so the
// endpoint is always reachable whatever the matcher selects.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	where := fmt.Sprintf("%s:%d", h.File(), h.Line())
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	ta := new(TokenAuth)
	if err := ta.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if err := checkCaddyfileRealm(h, ta, where); err != nil { // realmrules.go
		return nil, err
	}
	route := caddyhttp.Route{
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(ta, "handler", "token_auth", nil)},
	}
	if matcherSet != nil {
		route.MatcherSetsRaw = []caddy.ModuleMap{matcherSet, ta.endpointMatcherSet()}
	}
	return []httpcaddyfile.ConfigValue{{Class: "route", Value: route}}, nil
}

// endpointMatcherSet matches the endpoint path and everything under it.
func (ta *TokenAuth) endpointMatcherSet() caddy.ModuleMap {
	endpoint := ta.Endpoint
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	endpoint = strings.TrimSuffix(endpoint, "/")
	paths := caddyhttp.MatchPath{endpoint, endpoint + "/*"}
	return caddy.ModuleMap{"path": caddyconfig.JSON(paths, nil)}
}

// UnmarshalCaddyfile reads the directive's block (the syntax is above).
// The dispenser is at the directive name (the matcher already removed).
func (ta *TokenAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "realm":
			err = oneArg(d, &ta.Realm)
		case "endpoint":
			err = parseEndpoint(ta, d)
		case "signing_key":
			err = parseSigningKey(ta, d)
		case "verify_key":
			err = parseVerifyKey(ta, d)
		case "issuer":
			err = oneArg(d, &ta.Issuer)
		case "audience":
			err = oneArg(d, &ta.Audience)
		case "access_ttl":
			err = durationArg(d, &ta.AccessTTL)
		case "session_ttl":
			err = durationArg(d, &ta.SessionTTL)
		case "idle_ttl":
			err = durationArg(d, &ta.IdleTTL)
		case "reuse_grace":
			err = parseReuseGrace(ta, d)
		case "user":
			err = parseUser(ta, d)
		case "users_file":
			err = oneArg(d, &ta.UsersFile)
		case "store":
			err = parseStore(ta, d)
		case "cookies":
			err = parseCookies(ta, d)
		case "login_page":
			err = oneArg(d, &ta.LoginPage)
		case "require":
			err = parseRequire(ta, d)
		case "throttle":
			err = parseThrottle(ta, d)
		case "max_concurrent_hashes":
			err = positiveIntArg(d, &ta.MaxConcurrentHashes)
		case "max_sessions":
			err = positiveIntArg(d, &ta.MaxSessions)
		case "token_cache":
			err = parseTokenCache(ta, d)
		case "identity_provider":
			err = parseIdentityProvider(ta, d)
		case "mfa":
			err = parseMFA(ta, d)
		case "passkeys":
			err = parsePasskeys(ta, d)
		case "dpop":
			err = parseDPoP(ta, d)
		case "sso":
			err = parseSSO(ta, d)
		default:
			return d.Errf("unknown token_auth option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseEndpoint(ta *TokenAuth, d *caddyfile.Dispenser) error {
	if err := oneArg(d, &ta.Endpoint); err != nil {
		return err
	}
	if !strings.HasPrefix(ta.Endpoint, "/") {
		return d.Errf("endpoint must be a path starting with /")
	}
	return nil
}

// parseSigningKey: signing_key hs256 <secret> | signing_key ed25519|es256|rs256 <pem-file>
func parseSigningKey(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("signing_key takes an algorithm and a key: signing_key hs256 <secret> or signing_key ed25519|es256|rs256 <pem-file>")
	}
	if !knownKeyAlgorithm(args[0]) {
		return d.Errf("signing_key: unknown algorithm %q (want hs256, ed25519, es256 or rs256)", args[0])
	}
	ta.SigningKey = &KeyConfig{Algorithm: strings.ToLower(args[0]), Key: args[1]}
	return nil
}

// parseVerifyKey: verify_key <kid>|auto <alg> <pem-file-or-secret>
func parseVerifyKey(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 3 {
		return d.Errf("verify_key takes a key id (or auto), an algorithm and a key: verify_key <kid>|auto hs256|ed25519|es256|rs256 <secret-or-pem-file>")
	}
	if !knownKeyAlgorithm(args[1]) {
		return d.Errf("verify_key: unknown algorithm %q (want hs256, ed25519, es256 or rs256)", args[1])
	}
	ta.VerifyKeys = append(ta.VerifyKeys, KeyConfig{KID: args[0], Algorithm: strings.ToLower(args[1]), Key: args[2]})
	return nil
}

func parseReuseGrace(ta *TokenAuth, d *caddyfile.Dispenser) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return d.Errf("reuse_grace: invalid duration %q", s)
	}
	grace := caddy.Duration(dur)
	ta.ReuseGrace = &grace
	return nil
}

// parseUser: user <id> [<hash>] [{ email <e>; name <n>; roles <r...>; claim <k> <v> }]
// Without a hash the account signs in only with a passkey.
func parseUser(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 1 && len(args) != 2 {
		return d.Errf("user takes an id and a password hash (from `caddy hash-password`), or only an id for a passkey-only account")
	}
	u := User{ID: args[0]}
	if len(args) == 2 {
		u.Password = args[1]
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "email":
			if err := oneArg(d, &u.Email); err != nil {
				return err
			}
		case "name":
			if err := oneArg(d, &u.Name); err != nil {
				return err
			}
		case "roles":
			u.Roles = append(u.Roles, d.RemainingArgs()...)
			if len(u.Roles) == 0 {
				return d.ArgErr()
			}
		case "claim":
			kv := d.RemainingArgs()
			if len(kv) != 2 {
				return d.Errf("claim takes a name and a value")
			}
			if reservedClaims[kv[0]] {
				return d.Errf("claim %q is reserved", kv[0])
			}
			if u.Claims == nil {
				u.Claims = make(map[string]any)
			}
			u.Claims[kv[0]] = kv[1]
		default:
			return d.Errf("unknown user option %q", d.Val())
		}
	}
	if err := u.validate(); err != nil {
		return d.Err(err.Error())
	}
	ta.Users = append(ta.Users, u)
	return nil
}

// parseStore:
//
//	store bolt [<path>]
//	store redis <url>
//	store redis_sentinel <master> <sentinel-url...>
//	store redis_cluster <node-url...>
//	store memory
func parseStore(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	cfg := StoreConfig{Backend: args[0]}
	switch {
	case args[0] == "bolt" && len(args) <= 2:
		if len(args) == 2 {
			cfg.Path = args[1]
		}
	case args[0] == "redis" && len(args) == 2:
		cfg.URL = args[1]
	case args[0] == backendRedisSentinel && len(args) >= 3:
		cfg.Master, cfg.Sentinels = args[1], args[2:]
	case args[0] == backendRedisCluster && len(args) >= 2:
		cfg.Nodes = args[1:]
	case args[0] == "memory" && len(args) == 1:
	default:
		return d.Errf("store takes `bolt [<path>]`, `redis <url>`, `redis_sentinel <master> <sentinel-url...>`, `redis_cluster <node-url...>` or `memory`")
	}
	if err := cfg.validate(); err != nil {
		return d.Err(err.Error())
	}
	ta.Store = &cfg
	return nil
}

// parseCookies: cookies on|off
func parseCookies(ta *TokenAuth, d *caddyfile.Dispenser) error {
	var v string
	if err := oneArg(d, &v); err != nil {
		return err
	}
	switch v {
	case "on":
		ta.Cookies = nil // the default
	case "off":
		off := false
		ta.Cookies = &off
	default:
		return d.Errf("cookies takes on or off, got %q", v)
	}
	return nil
}

// parseRequire: require role <role...> | require mfa
func parseRequire(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "mfa" {
		ta.RequireMFA = true
		return nil
	}
	if len(args) < 2 || args[0] != "role" {
		return d.Errf("require takes `role <role...>` or `mfa`")
	}
	ta.RequireRoles = append(ta.RequireRoles, args[1:]...)
	return nil
}

// parseMFA: mfa totp [issuer <text>] [encryption_key <base64>]
func parseMFA(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 || args[0] != "totp" || len(args)%2 != 1 {
		return d.Errf("mfa takes `totp [issuer <text>] [encryption_key <base64>]`")
	}
	cfg := &TOTPConfig{}
	for i := 1; i < len(args); i += 2 {
		switch args[i] {
		case "issuer":
			cfg.Issuer = args[i+1]
		case "encryption_key":
			cfg.EncryptionKey = args[i+1]
		default:
			return d.Errf("mfa totp: unknown option %q (want issuer or encryption_key)", args[i])
		}
	}
	if ta.MFA == nil {
		ta.MFA = &MFAConfig{}
	}
	ta.MFA.TOTP = cfg
	return nil
}

// parseThrottle: throttle <failures> <window> <ban> | throttle off
func parseThrottle(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		ta.Throttle = &ThrottleConfig{Off: true}
		return nil
	}
	if len(args) != 3 {
		return d.Errf("throttle takes `<failures> <window> <ban>` (e.g. 5 10m 10m) or `off`")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n <= 0 {
		return d.Errf("throttle: failures must be a positive whole number, got %q", args[0])
	}
	cfg := &ThrottleConfig{Failures: n}
	for i, dst := range []*caddy.Duration{&cfg.Window, &cfg.Ban} {
		dur, err := caddy.ParseDuration(args[1+i])
		if err != nil || dur <= 0 {
			return d.Errf("throttle: invalid duration %q", args[1+i])
		}
		*dst = caddy.Duration(dur)
	}
	ta.Throttle = cfg
	return nil
}

// parseTokenCache: token_cache <entries>   (0 disables the cache)
func parseTokenCache(ta *TokenAuth, d *caddyfile.Dispenser) error {
	n, raw, ok, err := intArg(d, 0)
	if err != nil {
		return err
	}
	if !ok {
		return d.Errf("token_cache takes a number of entries (0 disables it), got %q", raw)
	}
	ta.TokenCache = &n
	return nil
}

// parseIdentityProvider (repeatable):
//
//	identity_provider <name> {
//	    issuer        <url>            # OpenID Connect discovery; or:
//	    github        [<base_url> [<api_url>]]
//	    client_id     <id>
//	    client_secret <secret>
//	    scopes        <scope...>
//	    label         <text...>
//	    allow_domain  <domain...>
//	    allow_email   <address...>
//	    roles         <role...>
//	    timeout       <duration>
//	}
func parseIdentityProvider(ta *TokenAuth, d *caddyfile.Dispenser) error {
	var p IdentityProvider
	if err := oneArg(d, &p.Name); err != nil {
		return d.Errf("identity_provider takes a name and a block")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		var err error
		switch option {
		case "issuer":
			err = oneArg(d, &p.Issuer)
		case "github":
			args := d.RemainingArgs()
			if len(args) > 2 {
				return d.Errf("github takes at most a base URL and an API URL")
			}
			p.GitHub = &GitHubProvider{}
			if len(args) > 0 {
				p.GitHub.BaseURL = args[0]
			}
			if len(args) > 1 {
				p.GitHub.APIURL = args[1]
			}
		case "client_id":
			err = oneArg(d, &p.ClientID)
		case "client_secret":
			err = oneArg(d, &p.ClientSecret)
		case "label":
			words := d.RemainingArgs()
			if len(words) == 0 {
				return d.ArgErr()
			}
			p.Label = strings.Join(words, " ")
		case "timeout":
			err = durationArg(d, &p.Timeout)
		case "scopes", "allow_domain", "allow_email", "roles":
			list := map[string]*[]string{"scopes": &p.Scopes, "allow_domain": &p.AllowDomains, "allow_email": &p.AllowEmails, "roles": &p.Roles}[option]
			args := d.RemainingArgs()
			*list = append(*list, args...)
			if len(args) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown identity_provider option %q", option)
		}
		if err != nil {
			return err
		}
	}
	if err := p.validate(); err != nil {
		return d.Err(err.Error())
	}
	ta.IdentityProviders = append(ta.IdentityProviders, p)
	return nil
}

// parsePasskeys: passkeys [on|off] [{ rp_id <domain>; rp_name <text>; origins <origin...>; user_verification required|preferred|discouraged }]
func parsePasskeys(ta *TokenAuth, d *caddyfile.Dispenser) error {
	cfg := &PasskeysConfig{}
	switch args := d.RemainingArgs(); {
	case len(args) == 0, len(args) == 1 && args[0] == "on":
	case len(args) == 1 && args[0] == "off":
		cfg.Off = true
	default:
		return d.Errf("passkeys takes on or off, then an optional block")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error // a value's error, at its line
		switch option := d.Val(); option {
		case "rp_id":
			if err := oneArg(d, &cfg.RPID); err != nil {
				return err
			}
			err = cfg.validateRPID()
		case "rp_name":
			if err := oneArg(d, &cfg.RPName); err != nil {
				return err
			}
		case "origins":
			origins := d.RemainingArgs()
			if len(origins) == 0 {
				return d.ArgErr()
			}
			for _, o := range origins {
				if err = cfg.validateOrigin(o); err != nil {
					break
				}
			}
			cfg.Origins = append(cfg.Origins, origins...)
		case "user_verification":
			if err := oneArg(d, &cfg.UserVerification); err != nil {
				return err
			}
			err = cfg.validateUserVerification()
		default:
			return d.Errf("unknown passkeys option %q", option)
		}
		if err != nil {
			return d.Err(err.Error())
		}
	}
	if err := cfg.validate(); err != nil { // rp_id given after origins outside it
		return d.Err(err.Error())
	}
	ta.Passkeys = cfg
	return nil
}

// parseDPoP: dpop off|optional|required [{ iat_window <duration>; nonce }]
func parseDPoP(ta *TokenAuth, d *caddyfile.Dispenser) error {
	cfg := DPoPConfig{}
	if err := oneArg(d, &cfg.Mode); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "iat_window":
			if err := durationArg(d, &cfg.IATWindow); err != nil {
				return err
			}
		case "nonce":
			if d.NextArg() {
				return d.ArgErr()
			}
			cfg.Nonce = true
		default:
			return d.Errf("unknown dpop option %q", d.Val())
		}
	}
	if err := cfg.resolved().validate(); err != nil {
		return d.Err(err.Error())
	}
	ta.DPoP = &cfg
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*TokenAuth)(nil)
