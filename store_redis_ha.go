package tokenauth

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Redis high availability: the realm's store on a Sentinel-managed master
// (`store redis_sentinel <master> <sentinel-url...>`) or on a Redis Cluster
// (`store redis_cluster <node-url...>`). Both use the redisStore of
// store_redis.go unchanged, on go-redis's failover and cluster clients,
// which follow a failover by themselves:
//
//   - Sentinel: the client asks the sentinels for the master, subscribes
//     to their +switch-master announcements and reconnects to the new
//     master when one is elected.
//   - Cluster: every key of a realm carries the realm's hash tag
//     (`token_auth:{<realm>}:...`), so all of them, the sessions, the
//     revocation set and stream, the throttle counters and the KV records,
//     live in one hash slot; each Lua script and MULTI therefore runs on the
//     one master that owns the slot, and MOVED answers after a failover send
//     the client to its successor.
//   - Revocations are published with plain PUBLISH, which a Redis Cluster
//     forwards to every node over its bus, so an instance subscribed
//     through any node hears them (sharded pub/sub would need Redis 7 and
//     save little at the rate revocations happen). The revocation stream
//     lives in the realm's slot like everything else; its periodic catch-up
//     read covers a message lost while a subscription moves to a new node.
//
// URLs of both forms are `redis://` or `rediss://` (TLS for every
// connection, each server's certificate checked against its own host
// name), and user, password and database in them mean what they mean for
// `store redis <url>`: the credentials and database of the Redis servers
// holding the sessions. They are written once, on the first URL (or
// repeated identically); the other URLs may name just host:port.
// A Sentinel that itself requires a password takes it from the query
// parameters `sentinel_username` and `sentinel_password` (Redis ACL user
// and `requirepass` of sentinel.conf).

// Store backend names of the high-availability forms.
const (
	backendRedisSentinel = "redis_sentinel"
	backendRedisCluster  = "redis_cluster"
)

// redisServers is what a list of HA URLs says: the addresses, and the
// credentials, database and TLS shared by every connection.
type redisServers struct {
	addrs            []string
	username         string
	password         string
	db               int
	tls              *tls.Config
	sentinelUsername string
	sentinelPassword string
}

// parseRedisServerURLs reads the URLs of a Sentinel (sentinelQuery) or
// Cluster form. Errors never quote a URL: it may hold a password.
func parseRedisServerURLs(form string, urls []string, sentinelQuery bool) (redisServers, error) {
	var out redisServers
	var first *url.URL // the URL carrying the credentials and database
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return redisServers{}, fmt.Errorf("store %s: URL %d must be redis://host:port or rediss://host:port", form, i+1)
		}
		q := u.Query()
		if sentinelQuery {
			if err := takeSentinelCredentials(form, i, q, &out); err != nil {
				return redisServers{}, err
			}
		}
		if len(q) > 0 {
			return redisServers{}, fmt.Errorf("store %s: URL %d: unknown query parameter %q", form, i+1, firstKey(q))
		}
		u.RawQuery = ""
		opts, err := parseRedisURL(u.String())
		if err != nil {
			return redisServers{}, fmt.Errorf("store %s: URL %d is invalid", form, i+1)
		}
		out.addrs = append(out.addrs, opts.Addr)
		switch {
		case first == nil:
			first = u
			out.username, out.password, out.db = opts.Username, opts.Password, opts.DB
			if u.Scheme == "rediss" {
				// no ServerName: each connection checks its own server's name
				out.tls = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		case u.Scheme != first.Scheme:
			return redisServers{}, fmt.Errorf("store %s: URL %d: all URLs must use the same scheme (redis:// or rediss://)", form, i+1)
		case (u.User != nil || strings.Trim(u.Path, "/") != "") &&
			(u.User.String() != first.User.String() || strings.Trim(u.Path, "/") != strings.Trim(first.Path, "/")):
			return redisServers{}, fmt.Errorf("store %s: URL %d names other credentials or another database than URL 1; give them once, on the first URL", form, i+1)
		}
	}
	if len(out.addrs) == 0 {
		return redisServers{}, fmt.Errorf("store %s needs at least one URL", form)
	}
	return out, nil
}

// takeSentinelCredentials moves sentinel_username and sentinel_password
// out of a Sentinel URL's query.
func takeSentinelCredentials(form string, i int, q url.Values, out *redisServers) error {
	for name, field := range map[string]*string{"sentinel_username": &out.sentinelUsername, "sentinel_password": &out.sentinelPassword} {
		if !q.Has(name) {
			continue
		}
		if v := q.Get(name); *field != "" && v != *field {
			return fmt.Errorf("store %s: URL %d: %s differs from an earlier URL's", form, i+1, name)
		} else {
			*field = v
		}
		q.Del(name)
	}
	return nil
}

func firstKey(q url.Values) string {
	for k := range q {
		return k
	}
	return ""
}

// universalOptions are the client options of a Sentinel (master set) or
// Cluster (master empty) store: one set of fields for both, so that both
// get the same timeouts as one server.
func (srv redisServers) universalOptions(master string) *redis.UniversalOptions {
	t := redisTimeouts()
	return &redis.UniversalOptions{
		Addrs:            srv.addrs,
		MasterName:       master,
		IsClusterMode:    master == "",
		SentinelUsername: srv.sentinelUsername,
		SentinelPassword: srv.sentinelPassword,
		Username:         srv.username,
		Password:         srv.password,
		DB:               srv.db,
		TLSConfig:        srv.tls,

		DialTimeout:           t.DialTimeout,
		ReadTimeout:           t.ReadTimeout,
		WriteTimeout:          t.WriteTimeout,
		PoolTimeout:           t.PoolTimeout,
		MaxRetries:            t.MaxRetries,
		DialerRetries:         t.DialerRetries,
		ContextTimeoutEnabled: t.ContextTimeoutEnabled,
	}
}

// newRedisSentinelStore opens the realm's store on the master that the
// sentinels know by the name master.
func newRedisSentinelStore(master string, srv redisServers, realm string, logger *zap.Logger) *redisStore {
	client := redis.NewFailoverClient(srv.universalOptions(master).Failover())
	st := openRedisStore(client, "sentinel "+master+"@"+strings.Join(srv.addrs, ","), realm, logger)
	st.serving = sentinelMaster(master, srv, redisTimeouts())
	return st
}

// sentinelMaster asks the sentinels, in turn, for the master's address.
func sentinelMaster(master string, srv redisServers, opts *redis.Options) func(context.Context) (string, error) {
	sentinels := make([]*redis.SentinelClient, len(srv.addrs))
	for i, addr := range srv.addrs {
		sentinels[i] = redis.NewSentinelClient(&redis.Options{
			Addr: addr, Username: srv.sentinelUsername, Password: srv.sentinelPassword, TLSConfig: srv.tls,
			DialTimeout: opts.DialTimeout, ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout,
			MaxRetries: -1, ContextTimeoutEnabled: true,
		})
	}
	return func(ctx context.Context) (string, error) {
		var last error
		for _, s := range sentinels {
			addr, err := s.GetMasterAddrByName(ctx, master).Result()
			if err == nil && len(addr) == 2 {
				return addr[0] + ":" + addr[1], nil
			}
			last = err
		}
		return "", fmt.Errorf("no sentinel names the master %q: %v", master, last)
	}
}

// newRedisClusterStore opens the realm's store on the Redis Cluster that
// the seed nodes belong to.
func newRedisClusterStore(srv redisServers, realm string, logger *zap.Logger) *redisStore {
	client := redis.NewClusterClient(srv.universalOptions("").Cluster())
	st := openRedisStore(client, "cluster "+strings.Join(srv.addrs, ","), realm, logger)
	// A master that answers nothing sends no MOVED: without a reload the
	// client would keep dialing it until its view of the cluster is 10 s
	// old. A reload is cheap: concurrent requests share one, at most one
	// each 200 ms.
	st.rediscover = func() { client.ReloadState(context.Background()) }
	st.serving = func(ctx context.Context) (string, error) {
		// from the client's view of the cluster: no round trip
		node, err := client.MasterForKey(ctx, st.prefix)
		if err != nil {
			return "", err
		}
		return node.Options().Addr, nil
	}
	return st
}

// redisHAServers reads a Sentinel or Cluster store config.
func (c StoreConfig) redisHAServers() (redisServers, error) {
	if c.Backend == backendRedisSentinel {
		if c.Master == "" || len(c.Sentinels) == 0 {
			return redisServers{}, fmt.Errorf("store redis_sentinel needs the master's name (as in the sentinels' `sentinel monitor <name> ...`) and at least one sentinel: store redis_sentinel mymaster redis://sentinel1:26379 redis://sentinel2:26379")
		}
		return parseRedisServerURLs(backendRedisSentinel, c.Sentinels, true)
	}
	if len(c.Nodes) == 0 {
		return redisServers{}, fmt.Errorf("store redis_cluster needs at least one node: store redis_cluster redis://node1:6379 redis://node2:6379")
	}
	srv, err := parseRedisServerURLs(backendRedisCluster, c.Nodes, false)
	if err == nil && srv.db != 0 {
		err = fmt.Errorf("store redis_cluster: a Redis Cluster has only database 0; drop /%d from the URL", srv.db)
	}
	return srv, err
}

// validateRedisHA checks a Sentinel or Cluster store config; one with
// placeholders in its URLs is checked once they are resolved.
func (c StoreConfig) validateRedisHA() error {
	for _, u := range append(append([]string{c.Master}, c.Sentinels...), c.Nodes...) {
		if strings.Contains(u, "{") {
			return nil
		}
	}
	_, err := c.redisHAServers()
	return err
}

// openRedisHA opens a Sentinel or Cluster store; no connection is made
// before the first command.
func (c StoreConfig) openRedisHA(realm string, logger *zap.Logger) (*redisStore, error) {
	srv, err := c.redisHAServers()
	if err != nil {
		return nil, err
	}
	if c.Backend == backendRedisSentinel {
		return newRedisSentinelStore(c.Master, srv, realm, logger), nil
	}
	return newRedisClusterStore(srv, realm, logger), nil
}

// replaceEach replaces the known placeholders in every string of list.
func replaceEach(repl *caddy.Replacer, list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = repl.ReplaceKnown(s, "")
	}
	return out
}
