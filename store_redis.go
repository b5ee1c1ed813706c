package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisStore keeps a realm's sessions in Redis, shared by every Caddy
// instance pointing at the same server. Every change that must be atomic
// runs as one Lua script inside Redis. Keys expire with the sessions'
// deadlines, so nothing needs sweeping.
//
// Key layout, all under the realm's prefix `token_auth:{<realm>}:` (the
// braces are a Redis Cluster hash tag: a realm's keys share one slot):
//
//	s:<sid>        hash: one session (times in Unix microseconds)
//	u:<user>       set of the user's sids, for listing and global logout
//	revoked        sorted set: revoked sid -> deadline (Unix ms)
//	revocations    stream of revocations (field "r": lines "<sid> <until ms>"),
//	               also the name of the pub/sub channel they are published on
type redisStore struct {
	client *redis.Client
	prefix string
	logger *zap.Logger
	// down is set while Redis is unreachable, so that an outage is logged
	// once when it starts and once when it ends, not on every request.
	down atomic.Bool
}

// Timeouts that keep a dead or hung Redis from holding requests: a login
// or refresh fails fast with 503 instead.
const (
	redisDialTimeout = time.Second
	redisIOTimeout   = time.Second
)

// revocationLogWindow is how long revocations stay in the stream. An
// instance that could not read the stream for longer than half of it
// reloads the whole revoked set instead.
const revocationLogWindow = 10 * time.Minute

// errOutageLogged marks store errors whose outage the store has already
// logged, so the endpoint does not log them again on every request.
var errOutageLogged = errors.New("outage logged by the store")

func init() {
	// go-redis prints every failed dial; an outage is reported once by
	// redisStore.check instead, and the client's own lines go to debug.
	redis.SetLogger(redisDebugLog{})
}

// redisDebugLog sends go-redis's internal messages to Caddy's log at
// debug level. (The setting is process-wide: other modules using go-redis
// log the same way.)
type redisDebugLog struct{}

func (redisDebugLog) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("token_auth.redis").Debug(fmt.Sprintf(format, v...))
}

// parseRedisURL reads a redis:// or rediss:// URL (password, user and
// database number included) and sets the timeouts.
func parseRedisURL(raw string) (*redis.Options, error) {
	if !strings.HasPrefix(raw, "redis://") && !strings.HasPrefix(raw, "rediss://") {
		return nil, fmt.Errorf("store redis: URL must start with redis:// or rediss://")
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		// go-redis errors may quote the URL, password included: keep them out
		return nil, fmt.Errorf("store redis: invalid URL")
	}
	opts.DialTimeout = redisDialTimeout
	opts.ReadTimeout = redisIOTimeout
	opts.WriteTimeout = redisIOTimeout
	opts.PoolTimeout = redisIOTimeout + time.Second
	opts.MaxRetries = 1
	opts.DialerRetries = 1
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

func newRedisStore(rawURL, realm string, logger *zap.Logger) (*redisStore, error) {
	opts, err := parseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &redisStore{
		client: redis.NewClient(opts),
		prefix: "token_auth:{" + realm + "}:",
		logger: logger.With(zap.String("realm", realm), zap.String("redis", opts.Addr)),
	}, nil
}

func (r *redisStore) sessionKey(sid string) string { return r.prefix + "s:" + sid }
func (r *redisStore) userKey(user string) string   { return r.prefix + "u:" + user }
func (r *redisStore) revokedKey() string           { return r.prefix + "revoked" }
func (r *redisStore) logKey() string               { return r.prefix + "revocations" }

// check turns a Redis error into the store's errors and keeps track of
// outages: the first failure is logged, and so is the first success after.
func (r *redisStore) check(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		if r.down.CompareAndSwap(true, false) {
			r.logger.Info("session store reachable again")
		}
		return err
	}
	if errors.Is(err, ErrSessionNotFound) || errors.Is(err, context.Canceled) {
		return err
	}
	var redisErr redis.Error
	if errors.As(err, &redisErr) && !isConnectionError(err) {
		// Redis answered, with an error: a bug or a misconfigured server,
		// not an outage; logged by whoever answers the request.
		return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	if r.down.CompareAndSwap(false, true) {
		r.logger.Error("session store unreachable; logins and refreshes answer 503 until it is back", zap.Error(err))
	}
	return fmt.Errorf("%w: %w: %v", ErrStoreUnavailable, errOutageLogged, err)
}

// isConnectionError says whether Redis itself cannot serve: loading,
// read-only replica, refused credentials and the like count as outages
// too (they last until someone acts, and are logged once).
func isConnectionError(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS", "NOPERM"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Times are kept in Unix microseconds, which Lua's doubles hold exactly;
// the zero time is 0.
func encodeTime(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

func decodeTime(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMicro(n)
}

// expiryMillis is the Unix millisecond at which a key kept until t may go.
func expiryMillis(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	return ms
}

func decodeSession(sid string, fields []string) (Session, error) {
	if len(fields)%2 != 0 || len(fields) == 0 {
		return Session{}, ErrSessionNotFound
	}
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i]] = fields[i+1]
	}
	gen, err := strconv.ParseUint(m["gen"], 10, 64)
	if err != nil {
		return Session{}, fmt.Errorf("%w: decoding session %q: %v", ErrStoreUnavailable, sid, err)
	}
	idle, _ := strconv.ParseInt(m["idle_ttl"], 10, 64)
	signIn, err := decodeSignIn(m["signin"])
	if err != nil {
		return Session{}, fmt.Errorf("%w: decoding session %q: %v", ErrStoreUnavailable, sid, err)
	}
	return Session{
		ID:         sid,
		User:       m["user"],
		Created:    decodeTime(m["created"]),
		LastUsed:   decodeTime(m["last_used"]),
		Expires:    decodeTime(m["expires"]),
		Generation: gen,
		RotatedAt:  decodeTime(m["rotated_at"]),
		Revoked:    m["revoked"] == "1",
		IdleTTL:    time.Duration(idle) * time.Microsecond,
		SignIn:     signIn,
	}, nil
}

// luaCommon holds the helpers every script shares. Numbers that do not fit
// %.14g (times) are never converted back to strings in Lua: the scripts
// only store strings they were given.
const luaCommon = `
-- int renders a number for Redis exactly (never as 1.7e+15)
local function int(n) return string.format('%d', n) end

local function load(key)
  local h = redis.call('HGETALL', key)
  if #h == 0 then return nil, h end
  local s = {}
  for i = 1, #h, 2 do s[h[i]] = h[i + 1] end
  return s, h
end

-- deadline: Session.deadline() in store.go, in microseconds
local function deadline(s)
  local d = tonumber(s.expires)
  local idle = tonumber(s.idle_ttl)
  if idle > 0 then
    local i = tonumber(s.last_used) + idle
    if i < d then d = i end
  end
  return d
end

-- keep a shared key (user index, revoked set) at least until ms
local function extend(key, ms, now_ms)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or ttl < ms - now_ms then redis.call('PEXPIREAT', key, int(ms)) end
end

-- revoke marks a live session revoked and records it for every instance
-- (sorted set, stream, pub/sub). Returns the line of the revocation.
local function revoke(prefix, sid, s, now_ms)
  redis.call('HSET', prefix .. 's:' .. sid, 'revoked', '1')
  local until_ms = math.ceil(deadline(s) / 1000)
  redis.call('ZADD', prefix .. 'revoked', int(until_ms), sid)
  redis.call('ZREMRANGEBYSCORE', prefix .. 'revoked', '-inf', int(now_ms))
  extend(prefix .. 'revoked', until_ms, now_ms)
  return sid .. ' ' .. int(until_ms)
end

local function announce(prefix, lines, now_ms, minid)
  if #lines == 0 then return end
  local msg = table.concat(lines, '\n')
  redis.call('XADD', prefix .. 'revocations', 'MINID', '~', minid, '*', 'r', msg)
  redis.call('PEXPIRE', prefix .. 'revocations', ARGV_LOG_WINDOW)
  redis.call('PUBLISH', prefix .. 'revocations', msg)
end
`

func luaScript(body string) *redis.Script {
	src := strings.ReplaceAll(luaCommon, "ARGV_LOG_WINDOW", strconv.FormatInt(revocationLogWindow.Milliseconds(), 10)) + body
	return redis.NewScript(src)
}

// createScript: KEYS = prefix; ARGV = sid, user, created, last_used,
// expires, gen, rotated_at, revoked, idle_ttl, expiry ms, now ms, sign-in JSON.
var createScript = luaScript(`
local prefix, sid, user = KEYS[1], ARGV[1], ARGV[2]
local key = prefix .. 's:' .. sid
redis.call('DEL', key)
redis.call('HSET', key, 'user', user, 'created', ARGV[3], 'last_used', ARGV[4],
  'expires', ARGV[5], 'gen', ARGV[6], 'rotated_at', ARGV[7], 'revoked', ARGV[8], 'idle_ttl', ARGV[9],
  'signin', ARGV[12])
local exp_ms, now_ms = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('PEXPIREAT', key, ARGV[10])
redis.call('SADD', prefix .. 'u:' .. user, sid)
-- a session's deadline never passes its absolute expiry
extend(prefix .. 'u:' .. user, math.ceil(tonumber(ARGV[5]) / 1000), now_ms)
if ARGV[8] == '1' then
  redis.call('ZADD', prefix .. 'revoked', ARGV[10], sid)
  extend(prefix .. 'revoked', exp_ms, now_ms)
end
return 1
`)

// rotateScript is decideRotation (store.go) in Lua; the conformance suite
// runs both on the same cases. KEYS = prefix; ARGV = sid, presented
// generation, now (µs), grace (µs), now ms, stream MINID.
// Returns {outcome, session fields...}, or {-1} for an unknown session.
var rotateScript = luaScript(`
local prefix, sid = KEYS[1], ARGV[1]
local key = prefix .. 's:' .. sid
local s = load(key)
if not s then return {-1} end
local presented, now, grace = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now_ms, minid = tonumber(ARGV[5]), ARGV[6]
local gen = tonumber(s.gen)
local outcome
if s.revoked == '1' then
  outcome = 3 -- refusedRevoked
elseif now >= deadline(s) then
  outcome = 4 -- refusedExpired
elseif presented == gen then
  outcome = 0 -- rotated
  redis.call('HSET', key, 'gen', int(gen + 1), 'rotated_at', ARGV[3], 'last_used', ARGV[3])
  s.last_used = ARGV[3]
  redis.call('PEXPIREAT', key, int(math.ceil(deadline(s) / 1000)))
elseif presented + 1 == gen and grace > 0 and s.rotated_at ~= '0' and now - tonumber(s.rotated_at) <= grace then
  outcome = 1 -- graced
else
  outcome = 2 -- reused
  announce(prefix, {revoke(prefix, sid, s, now_ms)}, now_ms, minid)
end
local _, h = load(key)
local out = {outcome}
for i = 1, #h do out[#out + 1] = h[i] end
return out
`)

// revokeScript: KEYS = prefix; ARGV = now ms, stream MINID, sids...
// Revokes the live sessions named and returns their ids.
var revokeScript = luaScript(`
local prefix, now_ms, minid = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local lines, ids = {}, {}
for i = 3, #ARGV do
  local s = load(prefix .. 's:' .. ARGV[i])
  if s and s.revoked ~= '1' then
    lines[#lines + 1] = revoke(prefix, ARGV[i], s, now_ms)
    ids[#ids + 1] = ARGV[i]
  end
end
announce(prefix, lines, now_ms, minid)
return ids
`)

// revokeUserScript: KEYS = prefix; ARGV = user, now ms, stream MINID.
var revokeUserScript = luaScript(`
local prefix, user, now_ms, minid = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ukey = prefix .. 'u:' .. user
local lines, ids = {}, {}
for _, sid in ipairs(redis.call('SMEMBERS', ukey)) do
  local s = load(prefix .. 's:' .. sid)
  if not s then
    redis.call('SREM', ukey, sid)
  elseif s.revoked ~= '1' then
    lines[#lines + 1] = revoke(prefix, sid, s, now_ms)
    ids[#ids + 1] = sid
  end
end
announce(prefix, lines, now_ms, minid)
return ids
`)

// streamMinID is the oldest stream entry kept, as a stream ID.
func streamMinID(now time.Time) string {
	return strconv.FormatInt(now.Add(-revocationLogWindow).UnixMilli(), 10)
}

func (r *redisStore) Create(ctx context.Context, s Session) error {
	revoked := "0"
	if s.Revoked {
		revoked = "1"
	}
	err := createScript.Run(ctx, r.client, []string{r.prefix},
		s.ID, s.User, encodeTime(s.Created), encodeTime(s.LastUsed), encodeTime(s.Expires),
		strconv.FormatUint(s.Generation, 10), encodeTime(s.RotatedAt), revoked,
		strconv.FormatInt(s.IdleTTL.Microseconds(), 10),
		expiryMillis(s.deadline()), time.Now().UnixMilli(), encodeSignIn(s.SignIn)).Err()
	return r.check(err)
}

func (r *redisStore) Get(ctx context.Context, sid string) (Session, error) {
	fields, err := r.client.HGetAll(ctx, r.sessionKey(sid)).Result()
	if err = r.check(err); err != nil {
		return Session{}, err
	}
	flat := make([]string, 0, 2*len(fields))
	for k, v := range fields {
		flat = append(flat, k, v)
	}
	return decodeSession(sid, flat)
}

func (r *redisStore) Rotate(ctx context.Context, sid string, presented uint64, now time.Time, grace time.Duration) (Session, rotation, error) {
	wall := time.Now()
	res, err := rotateScript.Run(ctx, r.client, []string{r.prefix},
		sid, strconv.FormatUint(presented, 10), encodeTime(now), strconv.FormatInt(grace.Microseconds(), 10),
		wall.UnixMilli(), streamMinID(wall)).Slice()
	if err = r.check(err); err != nil {
		return Session{}, 0, err
	}
	code, _ := res[0].(int64)
	if code < 0 {
		return Session{}, 0, ErrSessionNotFound
	}
	fields := make([]string, 0, len(res)-1)
	for _, v := range res[1:] {
		str, _ := v.(string)
		fields = append(fields, str)
	}
	s, err := decodeSession(sid, fields)
	return s, rotation(code), err
}

func (r *redisStore) Revoke(ctx context.Context, sid string) error {
	now := time.Now()
	err := revokeScript.Run(ctx, r.client, []string{r.prefix}, now.UnixMilli(), streamMinID(now), sid).Err()
	return r.check(err)
}

func (r *redisStore) RevokeUser(ctx context.Context, user string) ([]string, error) {
	now := time.Now()
	ids, err := revokeUserScript.Run(ctx, r.client, []string{r.prefix}, user, now.UnixMilli(), streamMinID(now)).StringSlice()
	if err = r.check(err); err != nil {
		return nil, err
	}
	return ids, nil
}

// sessions reads the named sessions in one round trip, skipping the ones
// that have expired; gone lists those.
func (r *redisStore) sessions(ctx context.Context, sids []string) (out []Session, gone []string, err error) {
	if len(sids) == 0 {
		return nil, nil, nil
	}
	pipe := r.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(sids))
	for i, sid := range sids {
		cmds[i] = pipe.HGetAll(ctx, r.sessionKey(sid))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, r.check(err)
	}
	now := time.Now()
	for i, cmd := range cmds {
		fields := cmd.Val()
		if len(fields) == 0 {
			gone = append(gone, sids[i])
			continue
		}
		flat := make([]string, 0, 2*len(fields))
		for k, v := range fields {
			flat = append(flat, k, v)
		}
		s, err := decodeSession(sids[i], flat)
		if err != nil {
			return nil, nil, err
		}
		if !sessionExpired(s, now) {
			out = append(out, s)
		}
	}
	sortSessions(out)
	return out, gone, nil
}

func (r *redisStore) ListUser(ctx context.Context, user string) ([]Session, error) {
	sids, err := r.client.SMembers(ctx, r.userKey(user)).Result()
	if err = r.check(err); err != nil {
		return nil, err
	}
	out, gone, err := r.sessions(ctx, sids)
	if err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		// tidy the index; a failure here changes nothing for the caller
		members := make([]any, len(gone))
		for i, g := range gone {
			members[i] = g
		}
		_ = r.client.SRem(ctx, r.userKey(user), members...).Err()
	}
	return out, nil
}

func (r *redisStore) ListRevoked(ctx context.Context) ([]Session, error) {
	entries, err := r.revokedUntil(ctx)
	if err != nil {
		return nil, err
	}
	sids := make([]string, 0, len(entries))
	for sid := range entries {
		sids = append(sids, sid)
	}
	out, _, err := r.sessions(ctx, sids)
	return out, err
}

// revokedUntil returns every revoked, unexpired session with its deadline,
// without reading the sessions themselves.
func (r *redisStore) revokedUntil(ctx context.Context) (map[string]time.Time, error) {
	now := time.Now()
	zs, err := r.client.ZRangeByScoreWithScores(ctx, r.revokedKey(), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err = r.check(err); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		if sid, ok := z.Member.(string); ok {
			out[sid] = time.UnixMilli(int64(z.Score))
		}
	}
	return out, nil
}

func (r *redisStore) Close() error { return r.client.Close() }

// parseRevocations reads the lines of a published revocation.
func parseRevocations(msg string, add func(sid string, until time.Time)) {
	for _, line := range strings.Split(msg, "\n") {
		sid, ms, ok := strings.Cut(line, " ")
		if !ok || sid == "" {
			continue
		}
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			continue
		}
		add(sid, time.UnixMilli(n))
	}
}

// resyncInterval is how often an instance reads the revocation stream,
// catching anything pub/sub lost (a reconnect, a dropped message); with
// pub/sub it bounds how late an instance learns of a revocation.
const resyncInterval = 2 * time.Second

// followRevocations feeds add with every revocation any instance makes, as
// soon as it is published, and re-reads the stream every resyncInterval so
// that a lost message still arrives within a few seconds. It returns when
// stop is closed.
func (r *redisStore) followRevocations(stop <-chan struct{}, add func(sid string, until time.Time)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-stop; cancel() }()

	var wg sync.WaitGroup
	sub := r.client.Subscribe(ctx, r.logKey())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for msg := range sub.Channel(redis.WithChannelHealthCheckInterval(10 * time.Second)) {
			parseRevocations(msg.Payload, add)
		}
	}()

	f := &revocationFollower{store: r, add: add}
	ticker := time.NewTicker(resyncInterval)
	defer ticker.Stop()
	for {
		f.sync(ctx)
		select {
		case <-ctx.Done():
			_ = sub.Close()
			wg.Wait()
			return
		case <-ticker.C:
		}
	}
}

// revocationFollower remembers how far into the revocation stream this
// instance has read.
type revocationFollower struct {
	store    *redisStore
	add      func(string, time.Time)
	lastID   string    // last stream entry read; "" before the first full load
	lastSync time.Time // last successful sync
}

func (f *revocationFollower) sync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*redisIOTimeout)
	defer cancel()
	if f.lastID == "" || time.Since(f.lastSync) > revocationLogWindow/2 {
		if err := f.full(ctx); err != nil {
			return
		}
	} else if err := f.tail(ctx); err != nil {
		return
	}
	f.lastSync = time.Now()
}

// full reloads the whole revoked set, after noting where the stream is,
// so that nothing revoked in between is missed.
func (f *revocationFollower) full(ctx context.Context) error {
	r := f.store
	last, err := r.client.XRevRangeN(ctx, r.logKey(), "+", "-", 1).Result()
	if err = r.check(err); err != nil {
		return err
	}
	lastID := "0-0"
	if len(last) > 0 {
		lastID = last[0].ID
	}
	entries, err := r.revokedUntil(ctx)
	if err != nil {
		return err
	}
	for sid, until := range entries {
		f.add(sid, until)
	}
	f.lastID = lastID
	return nil
}

// tail reads the stream entries after the last one read.
func (f *revocationFollower) tail(ctx context.Context) error {
	r := f.store
	for {
		msgs, err := r.client.XRangeN(ctx, r.logKey(), "("+f.lastID, "+", 500).Result()
		if err = r.check(err); err != nil {
			return err
		}
		for _, m := range msgs {
			if s, ok := m.Values["r"].(string); ok {
				parseRevocations(s, f.add)
			}
			f.lastID = m.ID
		}
		if len(msgs) < 500 {
			return nil
		}
	}
}
