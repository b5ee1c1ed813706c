package tokenauth

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
)

// TestUnmarshalCaddyfileRedisHA: the Sentinel and Cluster forms of
// `store` in the Caddyfile.
func TestUnmarshalCaddyfileRedisHA(t *testing.T) {
	for input, want := range map[string]*StoreConfig{
		"store redis_sentinel mymaster redis://127.0.0.1:26379": {
			Backend: "redis_sentinel", Master: "mymaster", Sentinels: []string{"redis://127.0.0.1:26379"},
		},
		"store redis_sentinel mymaster rediss://:pw@s1:26379/2 rediss://s2:26379 rediss://s3:26379": {
			Backend: "redis_sentinel", Master: "mymaster", Sentinels: []string{"rediss://:pw@s1:26379/2", "rediss://s2:26379", "rediss://s3:26379"},
		},
		"store redis_sentinel {env.MASTER} {env.SENTINEL1} {env.SENTINEL2}": {
			Backend: "redis_sentinel", Master: "{env.MASTER}", Sentinels: []string{"{env.SENTINEL1}", "{env.SENTINEL2}"},
		},
		"store redis_cluster redis://n1:6379 redis://n2:6379": {
			Backend: "redis_cluster", Nodes: []string{"redis://n1:6379", "redis://n2:6379"},
		},
		"store redis_cluster {env.NODE}": {Backend: "redis_cluster", Nodes: []string{"{env.NODE}"}},
	} {
		var ta TokenAuth
		if err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + input + "\n}")); err != nil {
			t.Fatalf("%q: %v", input, err)
		}
		if !reflect.DeepEqual(ta.Store, want) {
			t.Fatalf("%q: %+v", input, ta.Store)
		}
	}
}

// TestRedisHAConfigErrors: every malformed Sentinel or Cluster store is
// refused with an error that says what is wrong and never repeats a
// password.
func TestRedisHAConfigErrors(t *testing.T) {
	for _, c := range []struct{ option, want string }{
		{"store redis_sentinel", "store takes"},
		{"store redis_sentinel mymaster", "store takes"},
		{"store redis_cluster", "store takes"},
		{"store redis_sentinel mymaster http://s1:26379", "URL 1 must be redis://host:port or rediss://host:port"},
		{"store redis_cluster redis://n1:6379 n2:6379", "URL 2 must be redis://host:port"},
		{"store redis_cluster redis:///0", "URL 1 must be redis://host:port"},
		{"store redis_cluster redis://n1:6379 rediss://n2:6379", "URL 2: all URLs must use the same scheme"},
		{"store redis_cluster redis://:secret-one@n1:6379 redis://:secret-two@n2:6379", "URL 2 names other credentials or another database than URL 1"},
		{"store redis_sentinel m redis://:secret-one@s1:26379/1 redis://:secret-one@s2:26379/2", "URL 2 names other credentials or another database"},
		{"store redis_cluster redis://:secret-one@n1:6379/3", "a Redis Cluster has only database 0"},
		{"store redis_cluster redis://n1:6379/x", "URL 1 is invalid"},
		{"store redis_cluster redis://n1:6379?sentinel_password=secret-one", `URL 1: unknown query parameter "sentinel_password"`},
		{"store redis_sentinel m redis://s1:26379?pool_size=3", `URL 1: unknown query parameter "pool_size"`},
		{"store redis_sentinel m redis://s1:26379?sentinel_password=secret-one redis://s2:26379?sentinel_password=secret-two", "URL 2: sentinel_password differs"},
	} {
		t.Run(c.option, func(t *testing.T) {
			var ta TokenAuth
			err := ta.UnmarshalCaddyfile(caddyfile.NewTestDispenser("token_auth {\n" + c.option + "\n}"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret-") {
				t.Fatalf("the error repeats a password: %v", err)
			}
		})
	}
	// JSON configs reach the same checks
	for _, cfg := range []StoreConfig{
		{Backend: "redis_sentinel", Sentinels: []string{"redis://s1:26379"}},
		{Backend: "redis_sentinel", Master: "m"},
		{Backend: "redis_cluster"},
	} {
		if err := cfg.validate(); err == nil {
			t.Fatalf("accepted %+v", cfg)
		}
	}
}

// TestRedisHAServerURLs: what the URLs of a Sentinel or Cluster store
// mean: credentials and database from the first URL for every server, a
// sentinel's own password from its query, TLS checking each server's own
// name.
func TestRedisHAServerURLs(t *testing.T) {
	srv, err := parseRedisServerURLs("redis_sentinel", []string{
		"rediss://app:data-pw@s1.example:26379/4?sentinel_username=sen&sentinel_password=sen-pw",
		"rediss://s2.example:26380",
		"rediss://app:data-pw@s3.example/4",
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(srv.addrs, []string{"s1.example:26379", "s2.example:26380", "s3.example:6379"}) ||
		srv.username != "app" || srv.password != "data-pw" || srv.db != 4 ||
		srv.sentinelUsername != "sen" || srv.sentinelPassword != "sen-pw" {
		t.Fatalf("sentinel URLs: %+v", srv)
	}
	if srv.tls == nil || srv.tls.ServerName != "" {
		t.Fatalf("rediss must use TLS with each server's own name: %+v", srv.tls)
	}
	plain, err := parseRedisServerURLs("redis_cluster", []string{"redis://n1:7000", "redis://n2:7001"}, false)
	if err != nil || plain.tls != nil || plain.password != "" || len(plain.addrs) != 2 {
		t.Fatalf("cluster URLs: %+v, %v", plain, err)
	}
}

// TestRedisHAPlaceholders: placeholders in the master's name and in every
// URL are resolved before the store opens.
func TestRedisHAPlaceholders(t *testing.T) {
	t.Setenv("TEST_TA_MASTER", "mymaster")
	t.Setenv("TEST_TA_NODE", "redis://127.0.0.1:7000")
	cfg := StoreConfig{Backend: "redis_sentinel", Master: "{env.TEST_TA_MASTER}", Sentinels: []string{"{env.TEST_TA_NODE}", "redis://127.0.0.1:7001"}}.resolved()
	if cfg.Master != "mymaster" || cfg.Sentinels[0] != "redis://127.0.0.1:7000" || cfg.validate() != nil {
		t.Fatalf("sentinel placeholders: %+v", cfg)
	}
	cfg = StoreConfig{Backend: "redis_cluster", Nodes: []string{"{env.TEST_TA_NODE}"}}.resolved()
	if cfg.Nodes[0] != "redis://127.0.0.1:7000" || cfg.validate() != nil {
		t.Fatalf("cluster placeholders: %+v", cfg)
	}
	// an unset variable leaves an empty URL, refused once resolved
	if err := (StoreConfig{Backend: "redis_cluster", Nodes: []string{"{env.TEST_TA_UNSET}"}}.resolved()).validate(); err == nil {
		t.Fatal("an empty node URL was accepted")
	}
	// two configs differing only in their servers are two realms' stores
	a := StoreConfig{Backend: "redis_cluster", Nodes: []string{"redis://a:1"}}
	b := StoreConfig{Backend: "redis_cluster", Nodes: []string{"redis://b:1"}}
	if a.poolKey() == b.poolKey() {
		t.Fatal("pool key ignores the nodes")
	}
}

// TestAdaptCaddyfileRedisHA: the forms adapt to JSON that loads back.
func TestAdaptCaddyfileRedisHA(t *testing.T) {
	for input, want := range map[string]map[string]any{
		"store redis_sentinel mymaster {env.SENTINEL1} rediss://s2:26379": {
			"backend": "redis_sentinel", "master": "mymaster", "sentinels": []any{"{env.SENTINEL1}", "rediss://s2:26379"},
		},
		"store redis_cluster redis://n1:6379 redis://n2:6379": {
			"backend": "redis_cluster", "nodes": []any{"redis://n1:6379", "redis://n2:6379"},
		},
	} {
		cfg := adaptCaddyfile(t, ":8080 {\n\ttoken_auth {\n\t\t"+input+"\n\t}\n\trespond \"hi\"\n}")
		routes := siteRoutes(t, cfg)
		raw, _ := json.Marshal(routes[0])
		var route struct {
			Handle []map[string]any `json:"handle"`
		}
		if err := json.Unmarshal(raw, &route); err != nil {
			t.Fatal(err)
		}
		if got := route.Handle[0]["store"]; !reflect.DeepEqual(got, want) {
			t.Fatalf("%q adapted to %v, want %v", input, got, want)
		}
		var ta TokenAuth
		h, _ := json.Marshal(route.Handle[0])
		if err := json.Unmarshal(h, &ta); err != nil || ta.Store.validate() != nil {
			t.Fatalf("the adapted config does not load back: %v %+v", err, ta.Store)
		}
	}
}

// TestRedisClusterKeysInOneSlot: on a real 3-master Cluster, everything
// the plugin keeps (sessions, user index, revocations and their stream,
// throttle counters and bans, KV values and records) lands in the realm's
// one hash slot, on one master; which is why no script or MULTI can be
// refused as cross-slot.
func TestRedisClusterKeysInOneSlot(t *testing.T) {
	st := openTestRedis(t, testClusterConfig(t), "slot-"+randomID())
	ctx := context.Background()
	now := clock()
	a := mustCreate(t, st, newTestSession("alice", now))
	b := mustCreate(t, st, newTestSession("bob", now))
	mustRotate(t, st, a.ID, 1, now.Add(time.Second), 0)
	mustRotate(t, st, a.ID, 1, now.Add(2*time.Second), 0) // reuse: revokes and announces
	if err := st.Revoke(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	f := newRedisFailures(st)
	if _, _, err := f.Reserve(ctx, "user:alice", "1.2.3.4", time.Minute, 100); err != nil {
		t.Fatal(err)
	}
	if err := f.Ban(ctx, "ip:1.2.3.4", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Reserve(ctx, "user:bob", "1.2.3.4", time.Minute, 100); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTemp(ctx, "test:challenge", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecord(ctx, "passkey", "alice", "cred", []byte("y")); err != nil {
		t.Fatal(err)
	}

	cc := st.client.(*redis.ClusterClient)
	var mu sync.Mutex
	found := map[string][]string{} // master -> keys of the realm
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, st.prefix+"*").Result()
		mu.Lock()
		defer mu.Unlock()
		if len(keys) > 0 {
			found[node.Options().Addr] = keys
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("the realm's keys are spread over %d masters: %v", len(found), found)
	}
	want, err := cc.ClusterKeySlot(ctx, st.prefix).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, keys := range found {
		if len(keys) < 9 {
			t.Fatalf("expected every kind of key, found %v", keys)
		}
		for _, k := range keys {
			if slot, err := cc.ClusterKeySlot(ctx, k).Result(); err != nil || slot != want {
				t.Fatalf("key %s is in slot %d (%v), not the realm's %d", k, slot, err, want)
			}
		}
	}
}

// TestRedisClusterRevocationsReachEveryNode: a revocation is published
// with plain PUBLISH, which the cluster forwards to every node: a
// subscriber on any master or replica hears it.
func TestRedisClusterRevocationsReachEveryNode(t *testing.T) {
	cfg := testClusterConfig(t)
	st := openTestRedis(t, cfg, "pubsub-"+randomID())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var subs []*redis.PubSub
	for _, u := range cfg.Nodes {
		node := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(u, "redis://")})
		defer node.Close()
		sub := node.Subscribe(ctx, st.logKey())
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	s := mustCreate(t, st, newTestSession("alice", clock()))
	if err := st.Revoke(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil || !strings.HasPrefix(msg.Payload, s.ID+" ") {
			t.Fatalf("node %s: %v %v", cfg.Nodes[i], msg, err)
		}
	}
}
