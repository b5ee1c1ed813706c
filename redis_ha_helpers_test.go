package tokenauth

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
)

// Store configs of the Redis high-availability topologies
// (internal/testenv/redisha.go).

// testSentinelConfig is the store config of the run's shared Sentinel setup.
func testSentinelConfig(t testing.TB) StoreConfig {
	t.Helper()
	master, sentinels := testenv.RedisSentinel(t)
	return StoreConfig{Backend: backendRedisSentinel, Master: master, Sentinels: sentinels}
}

// testClusterConfig is the store config of the run's shared Redis Cluster.
func testClusterConfig(t testing.TB) StoreConfig {
	t.Helper()
	return StoreConfig{Backend: backendRedisCluster, Nodes: testenv.RedisCluster(t)}
}

// redisForms are the three forms of the Redis store, each on the run's
// shared servers: one server, Sentinel, Cluster.
var redisForms = []struct {
	name   string
	config func(t testing.TB) StoreConfig
}{
	{"redis", func(t testing.TB) StoreConfig { return StoreConfig{Backend: "redis", URL: testenv.RedisURL(t)} }},
	{"redis_sentinel", testSentinelConfig},
	{"redis_cluster", testClusterConfig},
}

// eachRedisForm runs a test on every form of the Redis store.
func eachRedisForm(t *testing.T, fn func(t *testing.T, cfg StoreConfig)) {
	for _, form := range redisForms {
		t.Run(form.name, func(t *testing.T) { fn(t, form.config(t)) })
	}
}

// openTestRedis opens a Redis store of any form in a realm of its own,
// closed and emptied when the test ends.
func openTestRedis(t testing.TB, cfg StoreConfig, realm string) *redisStore {
	t.Helper()
	return openTestRedisLogged(t, cfg, realm, nil)
}

// openTestRedisLogged is openTestRedis logging to logger.
func openTestRedisLogged(t testing.TB, cfg StoreConfig, realm string, logger *zap.Logger) *redisStore {
	t.Helper()
	var st *redisStore
	var err error
	if cfg.Backend == "redis" {
		st, err = newRedisStore(cfg.URL, realm, logger)
	} else {
		st, err = cfg.openRedisHA(realm, logger)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// leave the shared servers as found (the keys would expire anyway)
		ctx := context.Background()
		if keys, err := realmKeys(ctx, st); err == nil && len(keys) > 0 {
			st.client.Del(ctx, keys...)
		}
		st.Close()
	})
	return st
}

// realmKeys lists the keys of the store's realm. On a cluster KEYS only
// sees the node it is sent to: it goes to the master of the realm's slot,
// where every key of the realm is.
func realmKeys(ctx context.Context, st *redisStore) ([]string, error) {
	var node redis.Cmdable = st.client
	if cc, ok := st.client.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, st.prefix)
		if err != nil {
			return nil, err
		}
		node = master
	}
	return node.Keys(ctx, st.prefix+"*").Result()
}

// haConfig is the store config of a topology from testenv.StartRedisHA.
func haConfig(env map[string]string) StoreConfig {
	if m := env["REDIS_SENTINEL_MASTER"]; m != "" {
		return StoreConfig{Backend: backendRedisSentinel, Master: m, Sentinels: testenv.RedisURLs(env["REDIS_SENTINEL_ADDRS"])}
	}
	return StoreConfig{Backend: backendRedisCluster, Nodes: testenv.RedisURLs(env["REDIS_CLUSTER_ADDRS"])}
}
