package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
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
//	l:<user>       sorted set: the user's sids not known to be revoked or
//	               expired -> created (µs), for max_sessions (redis/create.lua)
//	revoked        sorted set: revoked sid -> deadline (Unix ms)
//	revocations    stream of revocations (field "r": lines "<sid> <until ms>"),
//	               also the name of the pub/sub channel they are published on
type redisStore struct {
	// client is a plain, Sentinel failover or Cluster client
	// (store_redis_ha.go); the keys and scripts are the same on all three.
	client redis.UniversalClient
	prefix string
	logger *zap.Logger
	// serving names the server that holds the realm's keys right now (the
	// master, after any failover), for the log; nil for one server.
	// lastServing is the last one logged. Both are used by the revocation
	// feed's goroutine only.
	serving     func(context.Context) (string, error)
	lastServing string
	// rediscover, when set, has the client look up anew which servers
	// to use, after a request found one unreachable (a Cluster master that
	// died: its replica takes over, and nothing else tells the client).
	rediscover func()
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
	t := redisTimeouts()
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = t.DialTimeout, t.ReadTimeout, t.WriteTimeout, t.PoolTimeout
	opts.MaxRetries, opts.DialerRetries, opts.ContextTimeoutEnabled = t.MaxRetries, t.DialerRetries, t.ContextTimeoutEnabled
	return opts, nil
}

// redisTimeouts are the client settings of every form (one server,
// Sentinel, Cluster): a dead or hung server fails a request fast (503),
// and one retry covers a connection that died idle or a failover's
// redirect.
func redisTimeouts() *redis.Options {
	return &redis.Options{
		DialTimeout:           redisDialTimeout,
		ReadTimeout:           redisIOTimeout,
		WriteTimeout:          redisIOTimeout,
		PoolTimeout:           redisIOTimeout + time.Second,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	}
}

func newRedisStore(rawURL, realm string, logger *zap.Logger) (*redisStore, error) {
	opts, err := parseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	return openRedisStore(redis.NewClient(opts), opts.Addr, realm, logger), nil
}

// openRedisStore is the realm's store on client; where names the servers
// in the log.
func openRedisStore(client redis.UniversalClient, where, realm string, logger *zap.Logger) *redisStore {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &redisStore{
		client: client,
		prefix: "token_auth:{" + realm + "}:",
		logger: logger.With(zap.String("realm", realm), zap.String("redis", where)),
	}
}

func (r *redisStore) sessionKey(sid string) string { return r.prefix + "s:" + sid }

func (r *redisStore) userKey(user string) string { return r.prefix + "u:" + user }

func (r *redisStore) revokedKey() string { return r.prefix + "revoked" }

func (r *redisStore) logKey() string { return r.prefix + "revocations" }

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
	if r.rediscover != nil {
		r.rediscover()
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

func (r *redisStore) Create(ctx context.Context, s Session, maxLive int) ([]string, error) {
	revoked := "0"
	if s.Revoked {
		revoked = "1"
	}
	now := time.Now()
	evicted, err := createScript.Run(ctx, r.client, []string{r.prefix},
		s.ID, s.User, encodeTime(s.Created), encodeTime(s.LastUsed), encodeTime(s.Expires),
		strconv.FormatUint(s.Generation, 10), encodeTime(s.RotatedAt), revoked,
		strconv.FormatInt(s.IdleTTL.Microseconds(), 10),
		expiryMillis(s.deadline()), now.UnixMilli(), encodeSignIn(s.SignIn),
		maxLive, streamMinID(now)).StringSlice()
	if err = r.check(err); err != nil {
		return nil, err
	}
	return evicted, nil
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
