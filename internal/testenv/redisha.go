package testenv

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Redis high-availability topologies of the tests. The shared ones of
// a test run come from test.d/setup-redis-ha.sh (REDIS_SENTINEL_MASTER,
// REDIS_SENTINEL_ADDRS, REDIS_CLUSTER_ADDRS); a test that fails a master
// over starts its own with StartRedisHA, from the same script
// (test.d/redis-ha.sh).

// needRedisHA: without the topology a test skips, except under CI, where
// it fails; under -short it always skips (no processes).
func needRedisHA(t testing.TB, why string) {
	t.Helper()
	SkipShort(t)
	Need(t, why+" (source test.d/setup-redis-ha.sh, or run ./test.sh)")
}

// RedisURLs turns "host:port,host:port" into redis:// URLs.
func RedisURLs(addrs string) []string {
	var out []string
	for _, a := range strings.Split(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, "redis://"+a)
		}
	}
	return out
}

// RedisSentinel is the run's shared Sentinel setup: the master's name and
// the sentinels' URLs.
func RedisSentinel(t testing.TB) (master string, sentinels []string) {
	t.Helper()
	master, addrs := os.Getenv("REDIS_SENTINEL_MASTER"), os.Getenv("REDIS_SENTINEL_ADDRS")
	if master == "" || addrs == "" {
		needRedisHA(t, "no Redis Sentinel setup (REDIS_SENTINEL_MASTER, REDIS_SENTINEL_ADDRS)")
	}
	return master, RedisURLs(addrs)
}

// RedisCluster is the run's shared Redis Cluster: its nodes' URLs.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	addrs := os.Getenv("REDIS_CLUSTER_ADDRS")
	if addrs == "" {
		needRedisHA(t, "no Redis Cluster (REDIS_CLUSTER_ADDRS)")
	}
	return RedisURLs(addrs)
}

// StartRedisHA starts a private "sentinel" or "cluster" topology with
// test.d/redis-ha.sh, stopped when the test ends, and returns what the
// script printed: REDIS_SENTINEL_MASTER, REDIS_SENTINEL_ADDRS and
// REDIS_SENTINEL_DATA, or REDIS_CLUSTER_ADDRS.
func StartRedisHA(t testing.TB, kind string) map[string]string {
	t.Helper()
	SkipShort(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		needRedisHA(t, "redis-server is not installed")
	}
	script := filepath.Join(moduleRoot(t), "test.d", "redis-ha.sh")
	dir := t.TempDir()
	t.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script, kind, dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting the Redis %s topology: %v\n%s", kind, err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// moduleRoot is the directory of go.mod, wherever the test runs from.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
