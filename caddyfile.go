package tokenauth

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// parseCaddyfile sets up the handler from Caddyfile tokens. The route it
// makes matches the directive's matcher OR the endpoint path, so the
// endpoint is always reachable whatever the matcher selects:
//
//	token_auth [<matcher>] {
//	    ...
//	}
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	ta := new(TokenAuth)
	if err := ta.UnmarshalCaddyfile(h.Dispenser); err != nil {
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

// UnmarshalCaddyfile reads the directive's block. The dispenser is at the
// directive name (the matcher already removed).
func (ta *TokenAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		parse, ok := subdirectives[d.Val()]
		if !ok {
			return d.Errf("unknown token_auth option %q", d.Val())
		}
		if err := parse(ta, d); err != nil {
			return err
		}
	}
	return nil
}

// subdirectives parse one option each, with the dispenser on its name.
var subdirectives = map[string]func(*TokenAuth, *caddyfile.Dispenser) error{
	"realm":       func(ta *TokenAuth, d *caddyfile.Dispenser) error { return oneArg(d, &ta.Realm) },
	"endpoint":    parseEndpoint,
	"issuer":      func(ta *TokenAuth, d *caddyfile.Dispenser) error { return oneArg(d, &ta.Issuer) },
	"audience":    func(ta *TokenAuth, d *caddyfile.Dispenser) error { return oneArg(d, &ta.Audience) },
	"access_ttl":  func(ta *TokenAuth, d *caddyfile.Dispenser) error { return durationArg(d, &ta.AccessTTL) },
	"session_ttl": func(ta *TokenAuth, d *caddyfile.Dispenser) error { return durationArg(d, &ta.SessionTTL) },
	"idle_ttl":    func(ta *TokenAuth, d *caddyfile.Dispenser) error { return durationArg(d, &ta.IdleTTL) },
	"reuse_grace": parseReuseGrace,
	"signing_key": parseSigningKey,
	"verify_key":  parseVerifyKey,
	"user":        parseUser,
	"users_file":  func(ta *TokenAuth, d *caddyfile.Dispenser) error { return oneArg(d, &ta.UsersFile) },
	"store":       parseStore,
	"require":     parseRequire,
	"token_cache": parseTokenCache,
	"dpop":        parseDPoP,
}

// oneArg reads exactly one argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// intArg reads exactly one argument as a whole number of at least min;
// ok is false (with raw, the argument as written) when it is not one.
func intArg(d *caddyfile.Dispenser, min int) (n int, raw string, ok bool, err error) {
	if err := oneArg(d, &raw); err != nil {
		return 0, "", false, err
	}
	n, convErr := strconv.Atoi(raw)
	return n, raw, convErr == nil && n >= min, nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	option := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: invalid duration %q: %v", option, s, err)
	}
	if dur <= 0 {
		return d.Errf("%s must be positive", option)
	}
	*dst = caddy.Duration(dur)
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

func knownKeyAlgorithm(alg string) bool {
	switch strings.ToLower(alg) {
	case "hs256", "ed25519", "es256", "rs256":
		return true
	}
	return false
}

// parseUser: user <id> <hash> [{ email <e>; name <n>; roles <r...>; claim <k> <v> }]
func parseUser(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("user takes an id and a password hash (from `caddy hash-password`)")
	}
	u := User{ID: args[0], Password: args[1]}
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

// parseStore: store bolt [<path>] | store redis <url> | store memory
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
	case args[0] == "memory" && len(args) == 1:
	default:
		return d.Errf("store takes `bolt [<path>]`, `redis <url>` or `memory`")
	}
	if err := cfg.validate(); err != nil {
		return d.Err(err.Error())
	}
	ta.Store = &cfg
	return nil
}

// parseRequire: require role <role...>
func parseRequire(ta *TokenAuth, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 2 || args[0] != "role" {
		return d.Errf("require takes `role <role...>`")
	}
	ta.RequireRoles = append(ta.RequireRoles, args[1:]...)
	return nil
}

// parseDPoP: dpop off|optional|required [{ iat_window <duration> }]
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
