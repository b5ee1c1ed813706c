package tokenauth

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The verified-token cache lets a repeated access token skip the signature
// check and the claims decoding: a guarded request carrying a token seen
// before costs a hash of the token string and a load from its hot slot
// (else a map lookup under its shard's read lock). A miss reuses the
// lookup's hash for the insertion.
//
// What it keeps, and for how long:
//   - Only tokens that passed full verification (signature, typ, kid, alg,
//     iss, aud, exp, nbf, iat), with their decoded claims, which are shared
//     and must be treated as read-only by every caller.
//   - An entry is never used past the token's exp: every hit compares exp
//     with the current time, so a cached token expires exactly when it would
//     have been refused by the parser.
//   - Revocation is not cached: the guard consults the realm's revocation
//     set after getting the claims, on hits as on misses.
//   - The cache belongs to one provisioned handler (its key ring): a config
//     reload that drops a key drops the cache with it.
//
// Memory is bounded whatever the token mix: at most `size` entries, each
// holding a token of at most maxCachedTokenSize bytes (larger tokens are
// verified every time). Each shard evicts in insertion order (a ring of
// its keys): with one access_ttl for every token, the first inserted is
// about the first to expire, so a flood of new tokens costs O(1) per
// insertion, never grows the cache, and pushes out the oldest entries.

// defaultTokenCacheSize is the number of verified access tokens a handler
// keeps when the config says nothing.
const defaultTokenCacheSize = 10000

// maxCachedTokenSize bounds the token strings the cache keeps: this
// plugin's access tokens are a few hundred bytes unless a user carries
// large custom claims.
const maxCachedTokenSize = 2 << 10

// tokenCacheShards spreads the lock of a busy cache.
const tokenCacheShards = 16

type tokenCache struct {
	seed     maphash.Seed
	shards   []cacheShard
	perShard int
	// seenOnce admits a token on its second verification only: a slot per
	// hash (direct-mapped, overwritten freely) remembers tokens verified
	// once. A stream of tokens that never repeat then costs what it costs
	// without a cache (no entry built, nothing evicted), while a token in
	// use is cached from its second request on.
	seenOnce []atomic.Uint64
	// hot is a lock-free front for hits: a slot per hash (direct-mapped,
	// 2×size) holding an entry of its shard's map. A hit found there takes
	// no lock: cores serving the same token would otherwise take turns on
	// the cache line of its shard's lock (taking an RWMutex's read lock
	// writes to it). A slot is only filled under its shard's lock, and
	// emptied when the shard drops the entry, so it never holds an entry
	// the map no longer has, and the size bound holds.
	hot []atomic.Pointer[cachedToken]
}

type cacheShard struct {
	mu   sync.RWMutex
	m    map[uint64]*cachedToken
	ring []uint64 // keys in insertion order, at most perShard; every key of m is in it
	next int      // the ring slot to reuse next, once the ring is full
	_    [32]byte // keep neighbouring shards' locks off one cache line
}

type cachedToken struct {
	token  string // compared on every hit: the hash only finds the slot
	claims *accessClaims
	exp    int64 // unix nanoseconds; the entry is dead from then on
}

// newTokenCache returns a cache of at most size entries, or nil (no
// caching) for size <= 0.
func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	n := min(tokenCacheShards, size)
	c := &tokenCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), perShard: size / n,
		seenOnce: make([]atomic.Uint64, 2*size), hot: make([]atomic.Pointer[cachedToken], 2*size)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*cachedToken)
	}
	return c
}

func (c *tokenCache) shard(h uint64) *cacheShard {
	return &c.shards[h%uint64(len(c.shards))]
}

// get returns the claims of raw if it was verified before and has not
// expired at now, else nil.
func (c *tokenCache) get(raw string, now time.Time) *accessClaims {
	claims, _ := c.lookup(raw, now)
	return claims
}

// lookup is get that also returns raw's hash, for insert: a lookup and
// the insertion after a miss hash the token once.
func (c *tokenCache) lookup(raw string, now time.Time) (*accessClaims, uint64) {
	if c == nil || len(raw) > maxCachedTokenSize {
		return nil, 0
	}
	h := maphash.String(c.seed, raw)
	slot := c.hotSlot(h)
	e := slot.Load()
	if e == nil || e.token != raw {
		sh := c.shard(h)
		sh.mu.RLock()
		if e = sh.m[h]; e != nil && e.token == raw {
			slot.Store(e) // under the lock: the shard cannot drop e meanwhile
		}
		sh.mu.RUnlock()
	}
	if e == nil || e.token != raw || now.UnixNano() >= e.exp {
		return nil, h
	}
	return e.claims, h
}

func (c *tokenCache) hotSlot(h uint64) *atomic.Pointer[cachedToken] {
	return &c.hot[h%uint64(len(c.hot))]
}

// forget empties e's hot slot if it holds e. Called with e's shard's
// lock held, as e leaves the shard's map.
func (c *tokenCache) forget(h uint64, e *cachedToken) {
	if e != nil {
		c.hotSlot(h).CompareAndSwap(e, nil)
	}
}

// put remembers the claims of a token that has just passed verification,
// if it passed it before (see seenOnce).
func (c *tokenCache) put(raw string, claims *accessClaims) {
	if c != nil {
		c.insert(raw, maphash.String(c.seed, raw), claims)
	}
}

// insert is put with raw's hash from lookup.
func (c *tokenCache) insert(raw string, h uint64, claims *accessClaims) {
	if c == nil || len(raw) > maxCachedTokenSize || claims.ExpiresAt == nil {
		return
	}
	if slot := &c.seenOnce[h%uint64(len(c.seenOnce))]; slot.Swap(h) != h {
		return // first sight
	}
	e := &cachedToken{token: strings.Clone(raw), claims: claims, exp: claims.ExpiresAt.UnixNano()}
	sh := c.shard(h)
	sh.mu.Lock()
	if old, present := sh.m[h]; present {
		c.forget(h, old)
	} else {
		c.remember(sh, h)
	}
	sh.m[h] = e
	c.hotSlot(h).Store(e)
	sh.mu.Unlock()
}

// remember records a new key in the ring; when the ring is full, the key
// in the slot it takes (the oldest) leaves the map. Called with the lock
// held.
func (c *tokenCache) remember(sh *cacheShard, h uint64) {
	if len(sh.ring) < c.perShard {
		sh.ring = append(sh.ring, h)
		return
	}
	oldest := sh.ring[sh.next]
	c.forget(oldest, sh.m[oldest])
	delete(sh.m, oldest)
	sh.ring[sh.next] = h
	sh.next = (sh.next + 1) % c.perShard
}

// len is the number of entries, expired ones included (for tests).
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// tokenCacheSize is the configured cache size, or the default.
func (ta *TokenAuth) tokenCacheSize() int {
	if ta.TokenCache == nil {
		return defaultTokenCacheSize
	}
	return *ta.TokenCache
}
