package tokenauth

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisFailures is the failureCounter of a realm whose store is Redis:
// every Caddy instance of the realm counts into the same keys, so a brute
// force spread over instances is counted once and a ban holds at all of
// them. It uses the store's client, prefix and outage handling: while
// Redis is unreachable every call fails with ErrStoreUnavailable (logged
// once per outage), and the login is answered 503 before any password is
// verified (fail closed, like the rest of login during an outage).
//
// Keys, under the realm's prefix; both expire by themselves, so nothing
// needs a sweeper and time is kept by Redis's clock alone:
//
//	f:<key>   hash: source -> failures in the current window, plus the
//	          field failureWindowField (0); expires when the window ends
//	b:<key>   string: present while key is banned; expires with the ban
type redisFailures struct {
	store *redisStore
}

// failureWindowField keeps a window open after every source of it has
// been forgiven, as memoryFailures does: the window starts at the first
// failure of the key and ends window later, whatever was forgiven in
// between. No source can be named so (sources are IPs and "user:" keys).
const failureWindowField = "#window"

func newRedisFailures(store *redisStore) *redisFailures {
	return &redisFailures{store: store}
}

func (f *redisFailures) failKey(key string) string { return f.store.prefix + "f:" + key }
func (f *redisFailures) banKey(key string) string  { return f.store.prefix + "b:" + key }

// reserveScript: KEYS = failures hash, ban key; ARGV = source, window ms,
// limit. Returns {failures, wait ms}: wait 0 when the attempt was counted
// (failures includes it), else the ban's or the full window's rest and
// nothing counted. One script, so checking and counting are atomic across
// every instance.
var reserveScript = redis.NewScript(`
local key, ban = KEYS[1], KEYS[2]
local source, window, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local banned = redis.call('PTTL', ban)
if banned > 0 then return {0, banned} end
-- absent: the first failure opens the window (and no key is ever left
-- without an expiry)
local ttl = redis.call('PTTL', key)
if ttl < 0 then
  redis.call('HSET', key, '` + failureWindowField + `', '0')
  redis.call('PEXPIRE', key, window)
  ttl = tonumber(window)
end
local total = 0
for _, n in ipairs(redis.call('HVALS', key)) do total = total + tonumber(n) end
if total >= limit then return {total, ttl} end
redis.call('HINCRBY', key, source, 1)
return {total + 1, 0}
`)

// releaseScript: KEYS = failures hash; ARGV = source. Takes back one
// counted attempt; never creates the hash (which would have no expiry).
var releaseScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
`)

// millis rounds d up to whole milliseconds, at least 1 (Redis refuses a
// zero expiry; a key kept 1 ms too long is harmless).
func millis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if time.Duration(ms)*time.Millisecond < d {
		ms++
	}
	return max(ms, 1)
}

func (f *redisFailures) Reserve(ctx context.Context, key, source string, window time.Duration, limit int) (int, time.Duration, error) {
	res, err := reserveScript.Run(ctx, f.store.client, []string{f.failKey(key), f.banKey(key)}, source, millis(window), limit).Int64Slice()
	if err = f.store.check(err); err != nil {
		return 0, 0, err
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("login throttle: unexpected answer %v", res)
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

func (f *redisFailures) Release(ctx context.Context, key, source string) error {
	return f.store.check(releaseScript.Run(ctx, f.store.client, []string{f.failKey(key)}, source).Err())
}

func (f *redisFailures) Forgive(ctx context.Context, key, source string) error {
	return f.store.check(f.store.client.HDel(ctx, f.failKey(key), source).Err())
}

// Ban sets the ban and drops the failures in one MULTI/EXEC.
func (f *redisFailures) Ban(ctx context.Context, key string, d time.Duration) error {
	_, err := f.store.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, f.failKey(key))
		if d > 0 {
			p.Set(ctx, f.banKey(key), "1", time.Duration(millis(d))*time.Millisecond)
		}
		return nil
	})
	return f.store.check(err)
}

func (f *redisFailures) Banned(ctx context.Context, key string) (time.Duration, error) {
	left, err := f.store.client.PTTL(ctx, f.banKey(key)).Result()
	if err = f.store.check(err); err != nil {
		return 0, err
	}
	// -2 (no key) and -1 (no expiry, never written so) are not banned
	if left <= 0 {
		return 0, nil
	}
	return left, nil
}
