package tokenauth

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	bolt "go.etcd.io/bbolt"
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

	// failures counts failed logins for the throttle (throttle.go).
	failures failureCounter
}

// realmPool holds one realmState per realm and store configuration, so a
// reload that keeps both keeps every session, and bolt's file lock is
// never taken twice by one process.
var realmPool = caddy.NewUsagePool()

// boltPool holds open bbolt databases by file path; several realms may
// share one file.
var boltPool = caddy.NewUsagePool()

type boltFile struct{ db *bolt.DB }

func (f *boltFile) Destruct() error { return f.db.Close() }

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
	store, release, err := cfg.open(ctx, name)
	if err != nil {
		return nil, err
	}
	rs := &realmState{
		name:    name,
		store:   store,
		revoked: newRevocationSet(),
		release: release,
		stop:    make(chan struct{}),
	}
	rs.failures = newMemoryFailures()
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
	return rs, nil
}

// Destruct stops the sweeper and closes the store; called by the pool when
// the last handler using this realm is cleaned up.
func (rs *realmState) Destruct() error {
	close(rs.stop)
	rs.done.Wait()
	err := rs.store.Close()
	if rs.release != nil {
		rs.release()
	}
	return err
}

// purger is implemented by stores that need expired sessions removed
// (Redis expires keys by itself).
type purger interface {
	purge(now time.Time) error
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

// StoreConfig chooses where sessions are kept.
type StoreConfig struct {
	// Backend is `bolt` (default: an embedded database file), `redis`
	// (shared by several Caddy instances) or `memory` (lost on restart;
	// for tests).
	Backend string `json:"backend,omitempty"`

	// Path of the bolt database file. Default: `token_auth/sessions.db`
	// under Caddy's data directory. Placeholders such as `{env.X}` work.
	Path string `json:"path,omitempty"`

	// URL of the Redis server, `redis://` or `rediss://`, with password and
	// database number if needed. Placeholders such as `{env.REDIS_URL}` work.
	URL string `json:"url,omitempty"`
}

func (c StoreConfig) backend() string {
	if c.Backend == "" {
		return "bolt"
	}
	return c.Backend
}

// resolved returns the config with placeholders replaced and defaults filled.
func (c StoreConfig) resolved() StoreConfig {
	repl := caddy.NewReplacer()
	c.Backend = c.backend()
	c.Path = repl.ReplaceKnown(c.Path, "")
	c.URL = repl.ReplaceKnown(c.URL, "")
	if c.Backend == "bolt" {
		if c.Path == "" {
			c.Path = filepath.Join(caddy.AppDataDir(), "token_auth", "sessions.db")
		}
		if abs, err := filepath.Abs(c.Path); err == nil {
			c.Path = abs
		}
	}
	return c
}

func (c StoreConfig) poolKey() string {
	return c.Backend + "\x00" + c.Path + "\x00" + c.URL
}

func (c StoreConfig) validate() error {
	switch c.backend() {
	case "bolt", "memory":
		return nil
	case "redis":
		return fmt.Errorf("store redis is not available in this version")
	default:
		return fmt.Errorf("unknown store backend %q (want bolt, redis or memory)", c.Backend)
	}
}

// open creates the realm's store; release gives back shared resources.
func (c StoreConfig) open(ctx caddy.Context, realm string) (Store, func(), error) {
	switch c.Backend {
	case "memory":
		return newMemoryStore(), nil, nil
	case "bolt":
		val, _, err := boltPool.LoadOrNew(c.Path, func() (caddy.Destructor, error) {
			db, err := openBoltDB(c.Path)
			if err != nil {
				return nil, err
			}
			return &boltFile{db: db}, nil
		})
		if err != nil {
			return nil, nil, err
		}
		release := func() { _, _ = boltPool.Delete(c.Path) }
		store, err := newBoltStore(val.(*boltFile).db, realm)
		if err != nil {
			release()
			return nil, nil, err
		}
		return store, release, nil
	}
	return nil, nil, fmt.Errorf("unknown store backend %q", c.Backend)
}

func sortSessions(list []Session) {
	sort.Slice(list, func(i, j int) bool { return list[i].Created.Before(list[j].Created) })
}
