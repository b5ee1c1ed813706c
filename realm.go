package tokenauth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// realmState is what every token_auth handler naming the same realm shares,
// and what must outlive a config reload: the open session store and the set
// of revoked sessions the guard consults. It lives in realmPool.
type realmState struct {
	name    string
	store   Store
	revoked *revocationSet
	release func() // gives back pooled resources the store holds
	stop    chan struct{}
	done    sync.WaitGroup
	logger  *zap.Logger
	// accessTTL is the longest access_ttl of the handlers using the realm:
	// how long a revoked session's access tokens may still be presented.
	accessTTL atomic.Int64

	// failures counts failed logins for the throttle, in Redis when the
	// store is.
	failures failureCounter

	// families is set when a handler of the realm has sso: sessions may
	// then be linked, and revoking one revokes its family (sso.go).
	families atomic.Bool
}

// realmPool holds one realmState per realm and store configuration, so a
// reload that keeps both keeps every session, and bolt's file lock is
// never taken twice by one process.
var realmPool = caddy.NewUsagePool()

// sweepInterval is how often expired sessions are purged.
const sweepInterval = time.Minute

// acquireRealm returns the shared state of a realm, opening its store on
// first use. Every call must be paired with releaseRealm.
func acquireRealm(ctx caddy.Context, name string, cfg StoreConfig, logger *zap.Logger) (*realmState, error) {
	key := name + "\x00" + cfg.poolKey()
	val, _, err := realmPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return openRealm(ctx, name, cfg, logger)
	})
	if err != nil {
		return nil, err
	}
	return val.(*realmState), nil
}

func releaseRealm(name string, cfg StoreConfig) error {
	_, err := realmPool.Delete(name + "\x00" + cfg.poolKey())
	return err
}

func openRealm(ctx caddy.Context, name string, cfg StoreConfig, logger *zap.Logger) (*realmState, error) {
	store, release, err := cfg.open(ctx, name, logger)
	if err != nil {
		return nil, err
	}
	rs := &realmState{
		name:    name,
		store:   store,
		revoked: newRevocationSet(),
		release: release,
		stop:    make(chan struct{}),
		logger:  logger,
	}
	rs.failures = newMemoryFailures()
	if rstore, ok := store.(*redisStore); ok {
		rs.failures = newRedisFailures(rstore) // shared by every instance
	}
	revoked, err := store.ListRevoked(context.Background())
	if err != nil {
		// The store may come back; until then the guard cannot learn of
		// revocations made before this start, which we say loudly.
		logger.Error("loading revoked sessions", zap.String("realm", name), zap.Error(err))
	}
	for _, s := range revoked {
		rs.revoked.add(s.ID, s.deadline())
	}
	rs.done.Add(1)
	go rs.sweep(logger)
	if feed, ok := store.(revocationFeed); ok {
		rs.done.Add(1)
		go func() {
			defer rs.done.Done()
			feed.followRevocations(rs.stop, rs.revoked.add)
		}()
	}
	registerRealm(rs)
	return rs, nil
}

// Destruct stops the sweeper and closes the store; called by the pool when
// the last handler using this realm is cleaned up.
func (rs *realmState) Destruct() error {
	unregisterRealm(rs)
	close(rs.stop)
	rs.done.Wait()
	err := rs.store.Close()
	if rs.release != nil {
		rs.release()
	}
	return err
}

func (rs *realmState) sweep(logger *zap.Logger) {
	defer rs.done.Done()
	ticker := time.NewTicker(sweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-rs.stop:
			return
		case now := <-ticker.C:
			rs.revoked.prune(now)
			if p, ok := rs.failures.(interface{ prune(time.Time) }); ok {
				p.prune(now)
			}
			if p, ok := rs.store.(purger); ok {
				if err := p.purge(now); err != nil {
					logger.Warn("purging expired sessions", zap.String("realm", rs.name), zap.Error(err))
				}
			}
		}
	}
}

// revocationSet is the in-process view of revoked sessions, consulted on
// every guarded request without a store round trip. Entries are kept until
// the session's deadline, after which no token of it can be valid anyway.
type revocationSet struct {
	m sync.Map // sid -> time.Time
}

func newRevocationSet() *revocationSet { return &revocationSet{} }

func (r *revocationSet) add(sid string, until time.Time) { r.m.Store(sid, until) }

func (r *revocationSet) has(sid string) bool {
	_, ok := r.m.Load(sid)
	return ok
}

func (r *revocationSet) prune(now time.Time) {
	r.m.Range(func(k, v any) bool {
		if !now.Before(v.(time.Time)) {
			r.m.Delete(k)
		}
		return true
	})
}

// revocationMargin covers an access token signed just after its session
// was revoked, by a refresh that was already past the store.
const revocationMargin = time.Minute

// useAccessTTL records the access_ttl of a handler using the realm.
func (rs *realmState) useAccessTTL(d time.Duration) {
	for {
		cur := rs.accessTTL.Load()
		if int64(d) <= cur || rs.accessTTL.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// revokedUntil is how long this process must refuse the access tokens of
// a session revoked now.
func (rs *realmState) revokedUntil(now time.Time) time.Time {
	ttl := time.Duration(rs.accessTTL.Load())
	if ttl == 0 {
		ttl = defaultAccessTTL
	}
	return now.Add(ttl + revocationMargin)
}

// revoke is the one way sessions get revoked (logout, global logout, reuse
// detection, removed user, admin API); a session of a single sign-on
// family takes its whole family with it. It records the revocation in the
// store unless the store did already (reuse is revoked by Rotate itself),
// and marks the sessions revoked in this process at once. Stores shared
// between instances (Redis) publish the revocation to every other
// instance in the same atomic step as the write, so it cannot be written
// and not announced.
func (rs *realmState) revoke(ctx context.Context, req revocation) ([]string, error) {
	sids := []string{req.sid}
	switch {
	case req.alreadyStored:
	case req.user != "":
		ids, err := rs.store.RevokeUser(ctx, req.user)
		if err != nil {
			return nil, err
		}
		sids = ids
	default:
		if err := rs.store.Revoke(ctx, req.sid); err != nil {
			return nil, err
		}
	}
	until := rs.revokedUntil(time.Now())
	for _, sid := range sids {
		rs.revoked.add(sid, until)
	}
	if req.user == "" {
		family, err := rs.revokeFamily(ctx, req.sid) // sso.go: a portal session and its site sessions
		for _, sid := range family {
			rs.revoked.add(sid, until)
		}
		sids = append(sids, family...)
		if err != nil {
			return sids, err
		}
	}
	return sids, nil
}

// revocation says what to revoke: one session (sid), or every session of
// a user; alreadyStored when the store has recorded it (reuse detection).
type revocation struct {
	sid           string
	user          string
	alreadyStored bool
}

// realms finds live realms by name, for the admin API. During a reload
// that changes a realm's store, two states of one name exist for a moment;
// the newest is the one served.
var realms = struct {
	sync.Mutex
	byName map[string][]*realmState
}{byName: make(map[string][]*realmState)}

func registerRealm(rs *realmState) {
	realms.Lock()
	defer realms.Unlock()
	realms.byName[rs.name] = append(realms.byName[rs.name], rs)
}

func unregisterRealm(rs *realmState) {
	realms.Lock()
	defer realms.Unlock()
	list := realms.byName[rs.name]
	for i, r := range list {
		if r == rs {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(realms.byName, rs.name)
	} else {
		realms.byName[rs.name] = list
	}
}

// lookupRealm returns the live realm of that name, or nil.
func lookupRealm(name string) *realmState {
	realms.Lock()
	defer realms.Unlock()
	list := realms.byName[name]
	if len(list) == 0 {
		return nil
	}
	return list[len(list)-1]
}
