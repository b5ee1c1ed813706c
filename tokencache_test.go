package tokenauth

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
)

// fakeClock is a settable time source for a tokenService.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestTokens is an HS256 token service with a verified-token cache of
// the given size (0: none) on a fake clock.
func newTestTokens(t testing.TB, cacheSize int) (*tokenService, *fakeClock) {
	t.Helper()
	ring, err := newKeyRing(KeyConfig{Algorithm: "hs256", Key: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	ts := newTokenService(ring, "test-issuer", "test-realm", 15*time.Minute)
	ts.now = clock.now
	ts.cache = newTokenCache(cacheSize)
	return ts, clock
}

func mintAccess(t testing.TB, ts *tokenService, u *User, sid string) string {
	t.Helper()
	tok, _, err := ts.issueAccess(u, sid, ts.now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var testUser = &User{ID: "alice", Email: "alice@example.com", Name: "Alice", Roles: []string{"admin", "dev"},
	Claims: map[string]any{"team": "blue", "level": float64(3)}}

// forgetKeys removes every verification key, so only the cache can accept
// a token afterwards.
func forgetKeys(ts *tokenService) { ts.keys.byKID, ts.keys.headers = map[string]*jwtKey{}, nil }

// verifyTwice verifies tok twice, so the cache admits it (second sight),
// and returns the claims of the second verification.
func verifyTwice(t testing.TB, ts *tokenService, tok string) *accessClaims {
	t.Helper()
	var claims *accessClaims
	for range 2 {
		var err error
		if claims, err = ts.verifyAccessCached(tok); err != nil {
			t.Fatal(err)
		}
	}
	return claims
}

// TestTokenCacheAdmitsOnSecondSight: a token verified once is not cached
// (a stream of tokens that never repeat builds no entries); verified
// twice, it is.
func TestTokenCacheAdmitsOnSecondSight(t *testing.T) {
	ts, _ := newTestTokens(t, 100)
	once, twice := mintAccess(t, ts, testUser, "s1"), mintAccess(t, ts, testUser, "s2")
	if _, err := ts.verifyAccessCached(once); err != nil {
		t.Fatal(err)
	}
	verifyTwice(t, ts, twice)
	if n := ts.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want only the token seen twice", n)
	}
	forgetKeys(ts)
	if _, err := ts.verifyAccessCached(once); err == nil {
		t.Fatal("a token seen once was served from the cache")
	}
	if _, err := ts.verifyAccessCached(twice); err != nil {
		t.Fatalf("a token seen twice is not cached: %v", err)
	}
}

func TestTokenCacheHitSkipsVerification(t *testing.T) {
	ts, _ := newTestTokens(t, 100)
	tok := mintAccess(t, ts, testUser, "s1")
	first := verifyTwice(t, ts, tok)
	forgetKeys(ts)
	again, err := ts.verifyAccessCached(tok)
	if err != nil {
		t.Fatalf("repeat token not served from the cache: %v", err)
	}
	if again != first || again.Subject != "alice" || again.SID != "s1" {
		t.Fatalf("cache returned %+v, want the claims of the first verification", again)
	}
	// a different token is still verified (and now refused: no keys)
	if _, err := ts.verifyAccessCached(mintAccessWith(t, "s2")); err == nil {
		t.Fatal("a token never seen was accepted without verification")
	}
}

// mintAccessWith signs a token with the test secret on a fresh service.
func mintAccessWith(t testing.TB, sid string) string {
	ts, _ := newTestTokens(t, 0)
	return mintAccess(t, ts, testUser, sid)
}

func TestTokenCacheDisabledWithZero(t *testing.T) {
	ts, _ := newTestTokens(t, 0)
	if ts.cache != nil {
		t.Fatal("token_cache 0 should disable the cache")
	}
	tok := mintAccess(t, ts, testUser, "s1")
	if _, err := ts.verifyAccessCached(tok); err != nil {
		t.Fatal(err)
	}
	forgetKeys(ts)
	if _, err := ts.verifyAccessCached(tok); err == nil {
		t.Fatal("with the cache disabled, every request must be verified")
	}
}

func TestTokenCacheEntryNeverOutlivesExp(t *testing.T) {
	ts, clock := newTestTokens(t, 100)
	tok := mintAccess(t, ts, testUser, "s1") // exp = now + 15m
	verifyTwice(t, ts, tok)
	forgetKeys(ts)
	clock.advance(15*time.Minute - time.Second)
	if _, err := ts.verifyAccessCached(tok); err != nil {
		t.Fatalf("cached token refused before its exp: %v", err)
	}
	clock.advance(time.Second) // now == exp: the parser refuses it too
	if c, err := ts.verifyAccessCached(tok); err == nil {
		t.Fatalf("cached token accepted at its exp: %+v", c)
	}
}

func TestTokenCacheBoundedWhateverTheTokenMix(t *testing.T) {
	const size = 64
	ts, _ := newTestTokens(t, size)
	var last string
	for i := 0; i < 40*size; i++ {
		last = mintAccess(t, ts, testUser, fmt.Sprintf("s%d", i))
		verifyTwice(t, ts, last)
		if n := ts.cache.len(); n > size {
			t.Fatalf("cache holds %d entries, bound is %d", n, size)
		}
	}
	if n := ts.cache.len(); n < size/2 {
		t.Fatalf("cache holds only %d of %d entries after a flood", n, size)
	}
	forgetKeys(ts)
	if _, err := ts.verifyAccessCached(last); err != nil {
		t.Fatalf("the newest token was evicted at once: %v", err)
	}
}

func TestTokenCacheEvictsOldestFirst(t *testing.T) {
	c := newTokenCache(2) // two shards of one entry each
	now := time.Now()
	claims := &accessClaims{}
	claims.ExpiresAt = jwtDate(now.Add(time.Minute))
	// three tokens of the same shard, inserted in order
	var toks []string
	for i := 0; len(toks) < 3; i++ {
		tok := fmt.Sprintf("token-%d", i)
		if c.shard(hashFor(c, tok)) == &c.shards[0] {
			toks = append(toks, tok)
		}
	}
	// each put twice: the second sight admits it
	c.put(toks[0], claims)
	c.put(toks[0], claims)
	c.put(toks[0], claims) // a re-put is no new entry
	c.put(toks[1], claims)
	c.put(toks[1], claims)
	if c.get(toks[0], now) != nil || c.get(toks[1], now) != claims {
		t.Fatal("want the older entry evicted for the newer")
	}
	c.put(toks[2], claims)
	c.put(toks[2], claims)
	if c.get(toks[1], now) != nil || c.get(toks[2], now) != claims || c.len() != 1 {
		t.Fatalf("want only the newest entry, have %d entries", c.len())
	}
}

func TestTokenCacheKeepsNoOversizedTokens(t *testing.T) {
	ts, _ := newTestTokens(t, 100)
	big := &User{ID: "bob", Claims: map[string]any{"blob": strings.Repeat("x", maxCachedTokenSize)}}
	tok := mintAccess(t, ts, big, "s1")
	if _, err := ts.verifyAccessCached(tok); err != nil {
		t.Fatal(err)
	}
	if ts.cache.len() != 0 {
		t.Fatal("a token over maxCachedTokenSize was cached")
	}
}

func TestTokenCacheComparesTheWholeToken(t *testing.T) {
	c := newTokenCache(10)
	now := time.Now()
	claims := &accessClaims{}
	claims.ExpiresAt = jwtDate(now.Add(time.Minute))
	c.put("token-a", claims)
	// plant a colliding slot: same hash bucket content under another token
	h := hashFor(c, "token-b")
	sh := c.shard(h)
	sh.m[h] = &cachedToken{token: "token-a", claims: claims, exp: claims.ExpiresAt.UnixNano()}
	if c.get("token-b", now) != nil {
		t.Fatal("a hash match with a different token string was accepted")
	}
}

// guardFor is a provisioned-enough handler around ts, for calling ServeHTTP
// directly.
func guardFor(ts *tokenService) *TokenAuth {
	return &TokenAuth{Realm: "test-realm", Endpoint: defaultEndpoint, tokens: ts,
		realm: &realmState{revoked: newRevocationSet()}}
}

// guardedRequest is a request as caddyhttp hands it to handlers: with a
// Replacer in its context.
func guardedRequest(tok string) (*http.Request, *caddy.Replacer) {
	repl := caddy.NewReplacer()
	r := httptest.NewRequest(http.MethodGet, "/private", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	r.Header.Set("Authorization", "Bearer "+tok)
	return r, repl
}

type countingHandler struct{ calls int }

func (h *countingHandler) ServeHTTP(http.ResponseWriter, *http.Request) error {
	h.calls++
	return nil
}

var _ caddyhttp.Handler = (*countingHandler)(nil)

func TestGuardChecksRevocationOnCacheHits(t *testing.T) {
	ts, _ := newTestTokens(t, 100)
	ta := guardFor(ts)
	tok := mintAccess(t, ts, testUser, "s1")
	next := new(countingHandler)
	for i := 0; i < 2; i++ { // a miss, then a hit
		r, _ := guardedRequest(tok)
		w := httptest.NewRecorder()
		if err := ta.ServeHTTP(w, r, next); err != nil || next.calls != i+1 {
			t.Fatalf("request %d: err %v, next called %d times", i, err, next.calls)
		}
	}
	ta.realm.revoked.add("s1", time.Now().Add(time.Hour))
	r, _ := guardedRequest(tok)
	w := httptest.NewRecorder()
	_ = ta.ServeHTTP(w, r, next)
	if w.Code != http.StatusUnauthorized || next.calls != 2 {
		t.Fatalf("revoked session on a cached token: status %d, next called %d times", w.Code, next.calls)
	}
}

func TestGuardSetsPlaceholdersOnMissAndHit(t *testing.T) {
	ts, _ := newTestTokens(t, 100)
	ta := guardFor(ts)
	tok := mintAccess(t, ts, testUser, "s1")
	want := map[string]string{
		"http.auth.user.id": "alice", "http.auth.user.sid": "s1", "http.auth.user.email": "alice@example.com",
		"http.auth.user.name": "Alice", "http.auth.user.roles": "admin,dev", "http.auth.user.team": "blue",
		"http.auth.user.level": "3",
	}
	for i := 0; i < 2; i++ {
		r, repl := guardedRequest(tok)
		if err := ta.ServeHTTP(httptest.NewRecorder(), r, new(countingHandler)); err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got, _ := repl.GetString(k); got != v {
				t.Errorf("request %d: {%s} = %q, want %q", i, k, got, v)
			}
		}
	}
}

func TestTokenCacheConcurrentUse(t *testing.T) {
	ts, _ := newTestTokens(t, 8)
	tokens := make([]string, 32)
	for i := range tokens {
		tokens[i] = mintAccess(t, ts, testUser, fmt.Sprintf("s%d", i))
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				tok := tokens[(g*7+i)%len(tokens)]
				c, err := ts.verifyAccessCached(tok)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = c.placeholders(identityPrefix + "roles")
			}
		}(g)
	}
	wg.Wait()
	if n := ts.cache.len(); n > 8 {
		t.Fatalf("cache holds %d entries, bound is 8", n)
	}
}

func TestTokenCacheValidateRefusesNegative(t *testing.T) {
	n := -5
	ta := &TokenAuth{TokenCache: &n}
	ta.applyDefaults()
	if err := ta.Validate(); err == nil || !strings.Contains(err.Error(), "token_cache") {
		t.Fatalf("want a token_cache error, got %v", err)
	}
}

func jwtDate(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

func hashFor(c *tokenCache, s string) uint64 { return maphash.String(c.seed, s) }

// TestTokenCacheHitsTakeNoLock: a cached token is found in its hot slot,
// without the shard's map (and its lock); and a hot slot never holds an
// entry its shard has dropped, whatever the token mix, so the size bound
// holds for it too.
func TestTokenCacheHitsTakeNoLock(t *testing.T) {
	ts, _ := newTestTokens(t, 64)
	tok := mintAccess(t, ts, testUser, "s1")
	claims := verifyTwice(t, ts, tok)
	c := ts.cache
	sh := c.shard(hashFor(c, tok))
	sh.mu.Lock()
	saved := sh.m
	sh.m = map[uint64]*cachedToken{} // a lookup through the map would miss now
	sh.mu.Unlock()
	if got := c.get(tok, ts.now()); got != claims {
		t.Fatal("a cached token was not found in its hot slot")
	}
	sh.mu.Lock()
	sh.m = saved
	sh.mu.Unlock()

	for i := 0; i < 40*64; i++ {
		verifyTwice(t, ts, mintAccess(t, ts, testUser, fmt.Sprintf("f%d", i)))
	}
	hot := 0
	for i := range c.hot {
		e := c.hot[i].Load()
		if e == nil {
			continue
		}
		hot++
		h := hashFor(c, e.token)
		sh := c.shard(h)
		sh.mu.RLock()
		inMap := sh.m[h] == e
		sh.mu.RUnlock()
		if !inMap {
			t.Fatalf("hot slot %d holds an entry its shard dropped", i)
		}
	}
	if hot == 0 || hot > 64 {
		t.Fatalf("%d entries in hot slots, want some, at most the cache size 64", hot)
	}
}
