package tokenauth

// Benchmarks of the plugin's hot paths. BENCHMARKS.md has the commands,
// the machine and the figures. Run them all with
//
//	go test -run '^$' -bench . -benchmem .
//
// They are not part of ./test.sh (test.d/check-bench.sh only runs each
// once, as a smoke test).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
	"go.uber.org/zap"
)

// benchAlgorithms are the signing keys the guard benchmarks run with. Each
// entry returns the key config for a fresh benchmark (dir is a temp dir for
// key files). firstSight is the cache size of the first-sight benchmarks
// (they cycle through several times as many tokens, see
// firstSightHeaders): smaller for RS256, whose tokens take about a
// millisecond each to sign.
var benchAlgorithms = []struct {
	name       string
	key        func(b *testing.B, dir string) KeyConfig
	firstSight int
}{
	{"HS256", func(*testing.B, string) KeyConfig { return KeyConfig{Algorithm: "hs256", Key: testSecret} }, 1024},
	{"Ed25519", func(b *testing.B, dir string) KeyConfig {
		ed, _, _ := testKeys(b)
		return KeyConfig{Algorithm: "ed25519", Key: benchPEMFile(b, dir, pkcs8PEM(b, ed))}
	}, 1024},
	{"ES256", func(b *testing.B, dir string) KeyConfig {
		_, ec, _ := testKeys(b)
		return KeyConfig{Algorithm: "es256", Key: benchPEMFile(b, dir, pkcs8PEM(b, ec))}
	}, 1024},
	{"RS256", func(b *testing.B, dir string) KeyConfig {
		_, _, rs := testKeys(b)
		return KeyConfig{Algorithm: "rs256", Key: benchPEMFile(b, dir, pkcs8PEM(b, rs))}
	}, 128},
}

// benchPEMFile writes a key file, as an operator would give it.
func benchPEMFile(b *testing.B, dir, pemText string) string {
	b.Helper()
	p := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(p, []byte(pemText), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchStores are the session stores the refresh and login benchmarks run
// with. A nil config skips the store: Redis runs when REDIS_URL names a
// server (a database the benchmarks may write to; each run uses its own
// realm's keys).
var benchStores = []struct {
	name string
	cfg  func(b *testing.B) *StoreConfig
}{
	{"memory", func(*testing.B) *StoreConfig { return &StoreConfig{Backend: "memory"} }},
	{"bolt", func(b *testing.B) *StoreConfig {
		return &StoreConfig{Backend: "bolt", Path: filepath.Join(b.TempDir(), "sessions.db")}
	}},
	{"redis", func(b *testing.B) *StoreConfig {
		url := os.Getenv("REDIS_URL")
		if url == "" {
			b.Skip("REDIS_URL is not set")
		}
		return &StoreConfig{Backend: "redis", URL: url}
	}},
	// the run's Sentinel setup and 3-master Cluster (test.d/setup-redis-ha.sh)
	{"redis_sentinel", func(b *testing.B) *StoreConfig { cfg := testSentinelConfig(b); return &cfg }},
	{"redis_cluster", func(b *testing.B) *StoreConfig { cfg := testClusterConfig(b); return &cfg }},
}

// benchUser has the claims a typical access token carries.
var benchUser = User{ID: "alice", Email: "alice@example.com", Name: "Alice Example", Roles: []string{"admin", "dev"},
	Claims: map[string]any{"team": "blue"}}

// provisionBench provisions a real handler (as Caddy would) with the given
// key, store and token cache size; it is cleaned up when b ends.
func provisionBench(b *testing.B, key KeyConfig, store *StoreConfig, cacheSize int) *TokenAuth {
	b.Helper()
	u := benchUser
	u.Password = testenv.Hash(b, "pw")
	ta := &TokenAuth{
		Realm:      fmt.Sprintf("bench-%d", time.Now().UnixNano()),
		SigningKey: &key,
		Users:      []User{u},
		Store:      store,
		TokenCache: &cacheSize,
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	if err := ta.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ta.Cleanup() })
	if err := ta.Validate(); err != nil {
		b.Fatal(err)
	}
	ta.logger = zap.NewNop()
	return ta
}

// benchTokens signs n access tokens for benchUser, each of its own session.
func benchTokens(b *testing.B, ta *TokenAuth, n int) []string {
	b.Helper()
	user := ta.users.byID(benchUser.ID)
	out := make([]string, n)
	for i := range out {
		tok, _, err := ta.tokens.issueAccess(user, randomID(), time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		out[i] = tok
	}
	return out
}

// discardWriter is a ResponseWriter that keeps nothing but its headers.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

type noopHandler struct{}

func (noopHandler) ServeHTTP(http.ResponseWriter, *http.Request) error { return nil }

// preparedRequest is a guarded request as caddyhttp hands it to a handler:
// prepared with caddyhttp.PrepareRequest, so a Replacer (and the vars) are
// in its context. benchGuard gives every iteration a fresh copy of it (its
// own Replacer, as Caddy gives every request: the guard adds its
// placeholders to it).
func preparedRequest(b *testing.B) (*http.Request, *discardWriter) {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/private/data", nil)
	w := &discardWriter{h: make(http.Header)}
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
	return r, w
}

// BenchmarkGuard is the guard's whole decision, ServeHTTP with a no-op next
// handler: a repeated token (cache hit), a token never seen before (full
// verification, then cache insertion into a full cache), the same token
// with the cache disabled, and a garbage token.
func BenchmarkGuard(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(alg.name+"/repeat", func(b *testing.B) {
			ta := provisionBench(b, alg.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, defaultTokenCacheSize)
			r, w := preparedRequest(b)
			r.Header.Set("Authorization", "Bearer "+benchTokens(b, ta, 1)[0])
			benchGuard(b, ta, r, w, nil)
		})
		b.Run(alg.name+"/first-sight", func(b *testing.B) {
			ta := provisionBench(b, alg.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, alg.firstSight)
			r, w := preparedRequest(b)
			headers := firstSightHeaders(b, ta, alg.firstSight)
			benchGuard(b, ta, r, w, headers)
		})
		b.Run(alg.name+"/no-cache", func(b *testing.B) {
			ta := provisionBench(b, alg.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, 0)
			r, w := preparedRequest(b)
			r.Header.Set("Authorization", "Bearer "+benchTokens(b, ta, 1)[0])
			benchGuard(b, ta, r, w, nil)
		})
	}
	b.Run("garbage", func(b *testing.B) {
		ta := provisionBench(b, benchAlgorithms[0].key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, defaultTokenCacheSize)
		r, w := preparedRequest(b)
		r.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.Z2FyYmFnZSBnYXJiYWdlIGdhcmJhZ2U.c2lnbmF0dXJl")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_ = ta.ServeHTTP(w, r, noopHandler{})
		}
		b.StopTimer()
		if w.h.Get("WWW-Authenticate") == "" {
			b.Fatal("garbage token was not refused")
		}
	})
}

// First-sight benchmarks fill a cache of cacheSize entries, then cycle
// through firstSightFactor times as many new tokens. The cache evicts in
// insertion order per shard, so a token comes back only after about
// firstSightFactor×cacheSize others, long after its eviction: every lookup
// misses. (Pre-minting b.N tokens instead would make the benchmark measure
// the garbage collector marking a heap of hundreds of MB.) HS256 keeps the
// first round's 16× cycle, the others 4×, which is enough with
// insertion-order eviction and keeps RS256's signing time reasonable.
func firstSightFactor(ta *TokenAuth) int {
	if ta.tokens.keys.signer.method == jwt.SigningMethodHS256 {
		return 16
	}
	return 4
}

// firstSightHeaders fills the cache, then returns Authorization headers
// of tokens it has not seen.
func firstSightHeaders(b *testing.B, ta *TokenAuth, cacheSize int) [][]string {
	for _, tok := range benchTokens(b, ta, cacheSize) {
		if _, err := ta.tokens.verifyAccessCached(tok); err != nil {
			b.Fatal(err)
		}
	}
	n := firstSightFactor(ta) * cacheSize
	headers := make([][]string, n)
	for i, tok := range benchTokens(b, ta, n) {
		headers[i] = []string{"Bearer " + tok}
	}
	return headers
}

// benchGuard runs the guard b.N times; with headers, iteration i carries
// headers[i%len(headers)] as its Authorization header.
func benchGuard(b *testing.B, ta *TokenAuth, r *http.Request, w *discardWriter, headers [][]string) {
	b.Helper()
	var passed countingHandler
	_ = ta.ServeHTTP(w, r, &passed) // warm up (and fill the cache, for repeat)
	passed.calls = 0
	// fresh requests, prepared in batches with the clock stopped
	batch := make([]*http.Request, min(b.N, 4096))
	srv := &caddyhttp.Server{}
	prepare := func() {
		b.StopTimer()
		for j := range batch {
			batch[j] = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, srv)
		}
		runtime.GC() // not the setup's garbage on the clock
		b.StartTimer()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(batch) == 0 {
			prepare()
		}
		if headers != nil {
			r.Header["Authorization"] = headers[i%len(headers)]
		}
		_ = ta.ServeHTTP(w, batch[i%len(batch)], &passed)
	}
	b.StopTimer()
	if passed.calls != b.N {
		b.Fatalf("%d of %d requests passed the guard", passed.calls, b.N)
	}
}

// bareClaims is what a plain golang-jwt user would decode an access token
// into: a struct, no custom claims.
type bareClaims struct {
	jwt.RegisteredClaims
	SID   string   `json:"sid"`
	Email string   `json:"email,omitempty"`
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

// BenchmarkBareJWT is golang-jwt's ParseWithClaims alone, with the same
// validation options, on the same kind of token: the yardstick for
// BenchmarkGuard/*/first-sight.
func BenchmarkBareJWT(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(alg.name+"/ParseWithClaims", func(b *testing.B) {
			ta := provisionBench(b, alg.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, 0)
			tokens := benchTokens(b, ta, 256)
			key := ta.tokens.keys.signer.verify
			parser := jwt.NewParser(
				jwt.WithIssuer(ta.Issuer), jwt.WithAudience(ta.Audience),
				jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
			)
			keyFunc := func(*jwt.Token) (any, error) { return key, nil }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := parser.ParseWithClaims(tokens[i%len(tokens)], &bareClaims{}, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFirstSightVsBareJWT measures the guard on tokens it has never
// seen and golang-jwt's bare ParseWithClaims on the same tokens in one
// loop, alternating which goes first, so that the load of a shared machine
// weighs on both alike. It reports both costs and their ratio
// (guard-ns/op ÷ bare-ns/op); ns/op is the sum of the two.
func BenchmarkFirstSightVsBareJWT(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(alg.name, func(b *testing.B) {
			ta := provisionBench(b, alg.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, alg.firstSight)
			headers := firstSightHeaders(b, ta, alg.firstSight)
			tokens := make([]string, len(headers))
			for i, h := range headers {
				tokens[i] = tokenFromAuthorization(h[0])
			}
			key := ta.tokens.keys.signer.verify
			parser := jwt.NewParser(
				jwt.WithIssuer(ta.Issuer), jwt.WithAudience(ta.Audience),
				jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
			)
			keyFunc := func(*jwt.Token) (any, error) { return key, nil }
			base, w := preparedRequest(b)
			srv := &caddyhttp.Server{}
			var passed countingHandler
			var guardTime, bareTime time.Duration
			runtime.GC()
			guard := func(i int) {
				r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, srv) // its own Replacer, off the clock
				start := time.Now()
				r.Header["Authorization"] = headers[i%len(headers)]
				_ = ta.ServeHTTP(w, r, &passed)
				guardTime += time.Since(start)
			}
			bare := func(i int) {
				start := time.Now()
				if _, err := parser.ParseWithClaims(tokens[i%len(tokens)], &bareClaims{}, keyFunc); err != nil {
					b.Fatal(err)
				}
				bareTime += time.Since(start)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%2 == 0 {
					guard(i)
					bare(i)
				} else {
					bare(i)
					guard(i)
				}
			}
			b.StopTimer()
			if passed.calls != b.N {
				b.Fatalf("%d of %d requests passed the guard", passed.calls, b.N)
			}
			b.ReportMetric(float64(guardTime.Nanoseconds())/float64(b.N), "guard-ns/op")
			b.ReportMetric(float64(bareTime.Nanoseconds())/float64(b.N), "bare-ns/op")
			b.ReportMetric(float64(guardTime)/float64(bareTime), "guard/bare")
		})
	}
}

// BenchmarkLogin is a login without the password check: opening the
// session in the store and signing the token pair.
func BenchmarkLogin(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			ta := provisionBench(b, benchAlgorithms[0].key(b, b.TempDir()), st.cfg(b), defaultTokenCacheSize)
			user := ta.users.byID(benchUser.ID)
			login := httptest.NewRequest("POST", "/authentication", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := ta.openSession(login, user, []string{"pwd"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ta.issuePair(user, s, "local"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// refreshClients is the number of concurrent clients of the parallel
// refresh benchmark.
const refreshClients = 32

// BenchmarkRefresh rotates refresh tokens through the endpoint's refresh
// (verification, the store's atomic Rotate, signing the new pair): one
// client, and refreshClients clients each rotating its own session.
func BenchmarkRefresh(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name+"/single", func(b *testing.B) {
			ta := provisionBench(b, benchAlgorithms[0].key(b, b.TempDir()), st.cfg(b), defaultTokenCacheSize)
			tok := benchSessions(b, ta, 1)[0]
			r := httptest.NewRequest(http.MethodPost, "/authentication", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := ta.refresh(r, tok)
				if err != nil {
					b.Fatal(err)
				}
				tok = res.RefreshToken
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
		})
		b.Run(fmt.Sprintf("%s/parallel-%d", st.name, refreshClients), func(b *testing.B) {
			ta := provisionBench(b, benchAlgorithms[0].key(b, b.TempDir()), st.cfg(b), defaultTokenCacheSize)
			tokens := benchSessions(b, ta, refreshClients)
			var next atomic.Int32
			// RunParallel starts parallelism*GOMAXPROCS goroutines
			b.SetParallelism((refreshClients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			commits0, calls0 := groupCommits(ta)
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)-1) % len(tokens)
				tok := tokens[i]
				r := httptest.NewRequest(http.MethodPost, "/authentication", nil)
				for pb.Next() {
					res, err := ta.refresh(r, tok)
					if err != nil {
						b.Error(err)
						return
					}
					tok = res.RefreshToken
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
			if commits, calls := groupCommits(ta); commits > commits0 {
				b.ReportMetric(float64(calls-calls0)/float64(commits-commits0), "rotations/commit")
			}
		})
	}
}

// groupCommits is the bolt store's count of commits and of the calls they
// held (zero for the other stores).
func groupCommits(ta *TokenAuth) (commits, calls int64) {
	if bs, ok := ta.realm.store.(*boltStore); ok {
		return bs.commit.commits.Load(), bs.commit.calls.Load()
	}
	return 0, 0
}

// benchSessions opens n sessions and returns their refresh tokens.
func benchSessions(b *testing.B, ta *TokenAuth, n int) []string {
	b.Helper()
	user := ta.users.byID(benchUser.ID)
	out := make([]string, n)
	for i := range out {
		s, err := ta.openSession(httptest.NewRequest("POST", "/authentication", nil), user, []string{"pwd"})
		if err != nil {
			b.Fatal(err)
		}
		res, err := ta.issuePair(user, s, "local")
		if err != nil {
			b.Fatal(err)
		}
		out[i] = res.RefreshToken
	}
	return out
}

// BenchmarkGuardedRequest is a whole request as Caddy hands it to a route,
// with what BenchmarkGuard leaves out: a fresh request context and
// Replacer per request (so placeholders start from an empty Replacer, as
// in Caddy), and a next handler that answers like `respond "ok"` (so the
// guard's private-answer writer does its work). plain is the same request
// and answer without the guard; the difference is what the guard adds to
// a request. repeat: one token (cache hit); new-token: a token never seen
// before every request; no-custom-claims: repeat, for a user without
// custom claims.
func BenchmarkGuardedRequest(b *testing.B) {
	hs256 := benchAlgorithms[0]
	run := func(b *testing.B, ta *TokenAuth, headers [][]string) {
		base := httptest.NewRequest(http.MethodGet, "http://example.com/private/data", nil)
		w := &discardWriter{h: make(http.Header)}
		srv := &caddyhttp.Server{}
		var answered countingHandler
		next := okHandler(&answered)
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var header []string
			if headers != nil {
				header = headers[i%len(headers)]
			}
			serveBenchRequest(ta, base, w, srv, header, next)
		}
		b.StopTimer()
		if answered.calls != b.N {
			b.Fatalf("%d of %d requests answered", answered.calls, b.N)
		}
	}
	guardedRequestCases(b, run)
	b.Run("no-custom-claims", func(b *testing.B) {
		ta := provisionBench(b, hs256.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, defaultTokenCacheSize)
		user := ta.users.byID(benchUser.ID)
		plainUser := *user
		plainUser.Claims = nil
		tok, _, err := ta.tokens.issueAccess(&plainUser, randomID(), time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		run(b, ta, [][]string{{"Bearer " + tok}})
	})
}

// BenchmarkGuardedRequestParallel is BenchmarkGuardedRequest with
// requests served in parallel (b.RunParallel), to tell whether anything
// shared on the guarded path (the token cache, the revocation set, the
// guard's counter) stops it scaling: run with -cpu 1,2 and compare how
// much each case gains from the second core (ns/op of -cpu 1 ÷ ns/op of
// -cpu 2; plain is what the machine allows).
func BenchmarkGuardedRequestParallel(b *testing.B) {
	run := func(b *testing.B, ta *TokenAuth, headers [][]string) {
		srv := &caddyhttp.Server{}
		// nothing shared between the goroutines but what the guard shares:
		// each counts its own answers and walks the tokens from its own place
		var answered, goroutines atomic.Int64
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			// a request and a writer per goroutine: PrepareRequest shares
			// the base request's header map
			base := httptest.NewRequest(http.MethodGet, "http://example.com/private/data", nil)
			w := &discardWriter{h: make(http.Header)}
			var count countingHandler
			answer := okHandler(&count)
			defer func() { answered.Add(int64(count.calls)) }()
			next := int(goroutines.Add(1)) * 7919
			for pb.Next() {
				var header []string
				if headers != nil {
					next++
					header = headers[next%len(headers)]
				}
				serveBenchRequest(ta, base, w, srv, header, answer)
			}
		})
		b.StopTimer()
		if answered.Load() != int64(b.N) {
			b.Fatalf("%d of %d requests answered", answered.Load(), b.N)
		}
	}
	guardedRequestCases(b, run)
}

// guardedRequestCases runs the cases of the guarded-request benchmarks:
// plain (no guard), repeat (one token: cache hits), new-token (a token
// never seen before every request).
func guardedRequestCases(b *testing.B, run func(b *testing.B, ta *TokenAuth, headers [][]string)) {
	hs256 := benchAlgorithms[0]
	b.Run("plain", func(b *testing.B) { run(b, nil, nil) })
	b.Run("repeat", func(b *testing.B) {
		ta := provisionBench(b, hs256.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, defaultTokenCacheSize)
		run(b, ta, [][]string{{"Bearer " + benchTokens(b, ta, 1)[0]}})
	})
	b.Run("new-token", func(b *testing.B) {
		ta := provisionBench(b, hs256.key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, hs256.firstSight)
		run(b, ta, firstSightHeaders(b, ta, hs256.firstSight))
	})
}

// okHandler answers like `respond "ok"`, counting its answers.
func okHandler(count *countingHandler) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		count.calls++
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(okBody)
		return err
	})
}

var okBody = []byte("ok")

// serveBenchRequest serves one request made from base as Caddy makes it
// (its own context and Replacer), with header as its Authorization
// header, through ta (nil: straight to next).
func serveBenchRequest(ta *TokenAuth, base *http.Request, w *discardWriter, srv *caddyhttp.Server, header []string, next caddyhttp.Handler) {
	clear(w.h)
	r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, srv)
	if header != nil {
		r.Header["Authorization"] = header
	}
	if ta == nil {
		_ = next.ServeHTTP(w, r)
	} else {
		_ = ta.ServeHTTP(w, r, next)
	}
}

// BenchmarkGuardCounter is the guard's count of an accepted request (one
// Prometheus counter per realm and result, bound at Provision) from every
// core at once (b.RunParallel; run with -cpu 1,2): what the one counter
// the guarded path shares costs when two cores pass its cache line back
// and forth (BENCHMARKS.md, issue 18 run 5).
func BenchmarkGuardCounter(b *testing.B) {
	ta := provisionBench(b, benchAlgorithms[0].key(b, b.TempDir()), &StoreConfig{Backend: "memory"}, 0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ta.countGuard("accepted")
		}
	})
}
