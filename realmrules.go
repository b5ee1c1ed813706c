package tokenauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// Every token_auth naming one realm shares that realm's sessions, keys and
// throttle, so they must also agree on where sessions live (the store) and
// who the users are (user lines and users_file). Otherwise two handlers of
// "one" realm would silently be two (the admin API reaching only one, a
// revocation missing the other's guard), or a session created at one would
// be refused at the other. A config where they differ is refused: by the
// Caddyfile adapter naming both lines, and at provisioning (JSON configs).

// checkRealmName refuses realm names that would break the store's key
// layout: the realm is the Redis Cluster hash tag of every key of the realm
// (`token_auth:{<realm>}:`), and a brace in it moves the tag, so that a
// realm starting with `}` spreads its keys over slots and every multi-key
// script fails with CROSSSLOT.
func checkRealmName(realm string) error {
	if strings.ContainsAny(realm, "{}") {
		return fmt.Errorf("realm %q: a realm name must not contain { or }", realm)
	}
	return nil
}

// realmConfig is what the handlers of one realm must agree on.
type realmConfig struct {
	store StoreConfig // resolved
	users string      // inline users and users_file
	sso   string      // the sso block and endpoint (sso.go)
	// the realm's bounds, defaults filled in (sessionlimit.go, hashslots_realm.go)
	maxSessions, maxConcurrentHashes int
}

// realmClaim is the first handler of a realm seen in one config, and where
// it was written (a Caddyfile line; "" in JSON).
type realmClaim struct {
	cfg   realmConfig
	where string
}

func (ta *TokenAuth) realmConfig() realmConfig {
	users, _ := json.Marshal(ta.Users) // plain data: never fails
	return realmConfig{store: ta.Store.resolvedOrDefault(), users: string(users) + "\x00" + ta.UsersFile,
		sso:         ta.SSO.realmKey(ta.Endpoint),
		maxSessions: ta.maxLiveSessions(), maxConcurrentHashes: hashSlotCount(ta.MaxConcurrentHashes)}
}

// conflict says how two handlers of a realm disagree, or "" when they agree.
func (c realmConfig) conflict(first realmConfig) string {
	switch {
	case c.store.poolKey() != first.store.poolKey():
		return fmt.Sprintf("different stores (%s, then %s)", first.store.describe(), c.store.describe())
	case c.users != first.users:
		return "different users (user lines or users_file)"
	case c.sso != first.sso:
		return fmt.Sprintf("different sso blocks (%s, then %s)", describeSSO(first.sso), describeSSO(c.sso))
	case c.maxSessions != first.maxSessions:
		return fmt.Sprintf("different max_sessions (%d, then %d)", first.maxSessions, c.maxSessions)
	case c.maxConcurrentHashes != first.maxConcurrentHashes:
		return fmt.Sprintf("different max_concurrent_hashes (%d, then %d)", first.maxConcurrentHashes, c.maxConcurrentHashes)
	}
	return ""
}

// describe names a resolved store without a password its URL may carry.
func (c StoreConfig) describe() string {
	switch c.Backend {
	case "bolt":
		return "bolt " + c.Path
	case "redis":
		if u, err := url.Parse(c.URL); err == nil {
			return "redis " + u.Redacted()
		}
	}
	return c.Backend
}

func realmConflictError(realm, how, first, second string) error {
	where := ""
	if first != "" {
		where = fmt.Sprintf(" (%s and %s)", first, second)
	}
	return fmt.Errorf("realm %q: two token_auth directives%s have %s; every directive naming a realm must have the same store, the same users, the same sso block (and endpoint), max_sessions and max_concurrent_hashes (left out means the default), or name different realms", realm, where, how)
}

// caddyfileRealmsKey is where the Caddyfile adapter's state keeps the
// realms seen so far in the file.
const caddyfileRealmsKey = "token_auth.realms"

// checkCaddyfileRealm refuses a directive whose realm another directive of
// the same Caddyfile configured differently, naming both lines.
func checkCaddyfileRealm(h httpcaddyfile.Helper, ta *TokenAuth, where string) error {
	realms, _ := h.State[caddyfileRealmsKey].(map[string]realmClaim)
	if realms == nil {
		realms = make(map[string]realmClaim)
		h.State[caddyfileRealmsKey] = realms
	}
	realm := ta.Realm
	if realm == "" {
		realm = defaultRealm
	}
	cfg := ta.realmConfig()
	first, seen := realms[realm]
	if !seen {
		realms[realm] = realmClaim{cfg: cfg, where: where}
		return nil
	}
	if how := cfg.conflict(first.cfg); how != "" {
		return realmConflictError(realm, how, first.where, where)
	}
	return nil
}

// provisionedRealms holds, per config being loaded (its context), the
// first handler of each realm, for the same check on JSON configs. An
// entry goes when its config is unloaded; a reload is a new config, so it
// may change a realm's store or users.
var provisionedRealms = struct {
	sync.Mutex
	byConfig map[context.Context]map[string]realmClaim
}{byConfig: make(map[context.Context]map[string]realmClaim)}

func claimRealm(ctx caddy.Context, realm string, cfg realmConfig) error {
	provisionedRealms.Lock()
	defer provisionedRealms.Unlock()
	realms := provisionedRealms.byConfig[ctx.Context]
	if realms == nil {
		realms = make(map[string]realmClaim)
		provisionedRealms.byConfig[ctx.Context] = realms
		key := ctx.Context
		ctx.OnCancel(func() {
			provisionedRealms.Lock()
			delete(provisionedRealms.byConfig, key)
			provisionedRealms.Unlock()
		})
	}
	first, seen := realms[realm]
	if !seen {
		realms[realm] = realmClaim{cfg: cfg}
		return nil
	}
	if how := cfg.conflict(first.cfg); how != "" {
		return realmConflictError(realm, how, "", "")
	}
	return nil
}

// describeSSO names a realmKey of an sso block.
func describeSSO(key string) string {
	if key == "" {
		return "none"
	}
	return key
}
