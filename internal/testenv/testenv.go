// Package testenv holds what the unit tests (package tokenauth) and the
// end-to-end tests (package e2e) both need from the machine: the CI rule
// for missing programs, free ports, a private redis-server, polling, and
// cheap password hashes. It is imported by _test.go files only.
package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"
)

// Need is called when a test cannot run without something the machine
// lacks: under CI (CI=true) it fails, so a broken setup never passes
// silently; locally it skips.
func Need(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; test.sh (test.d/setup-*.sh) provides it under CI", why)
	}
	t.Skip(why)
}

// SkipShort skips a test that starts a process (redis-server, Caddy,
// Chromium, node, ...) under `go test -short`, the quick loop.
func SkipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a process; skipped under -short")
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every 50 ms until it holds, failing after limit.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// Hash returns a cheap bcrypt hash (cost 4) so tests stay fast; the
// format is what `caddy hash-password` prints.
func Hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// JWTParts decodes a JWT's header and claims without verifying it.
func JWTParts(t testing.TB, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return header, claims
}

// RedisURL is the shared redis-server of the test run (REDIS_URL, set by
// test.d/setup-redis.sh); without it, a private server is started when
// redis-server is installed. Skipped under -short.
func RedisURL(t testing.TB) string {
	t.Helper()
	SkipShort(t)
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return StartRedis(t).URL
}

// Redis is a private redis-server process that a test may stop and start
// again on the same port.
type Redis struct {
	t    testing.TB
	bin  string
	dir  string
	Port int // on 127.0.0.1
	URL  string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server (REDIS_SERVER names the binary,
// else redis-server from PATH), stopped when the test ends. Skipped under
// -short.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	SkipShort(t)
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			Need(t, "redis-server is not installed")
		}
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), Port: FreePort(t)}
	r.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port)
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server (again) and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(r.Port), "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port), MaxRetries: -1})
	defer client.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
	}
	log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	r.t.Fatalf("redis-server did not start:\n%s", log)
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s).
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

// Claim returns a string claim of a JWT, unverified ("" when absent).
func Claim(t testing.TB, tok, name string) string {
	t.Helper()
	_, c := JWTParts(t, tok)
	s, _ := c[name].(string)
	return s
}

// NewKeys generates a fresh Ed25519 and P-256 key.
func NewKeys(t testing.TB) (ed25519.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ed, ec
}
