package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Session is the server-side state of one login: the refresh token family.
// It holds no token strings, only what is needed to decide whether a
// presented refresh token is current, a racing duplicate or a stolen copy.
type Session struct {
	ID         string    `json:"sid"`
	User       string    `json:"user"`
	Created    time.Time `json:"created"`
	LastUsed   time.Time `json:"last_used"`
	Expires    time.Time `json:"expires"`
	Generation uint64    `json:"generation"`
	RotatedAt  time.Time `json:"rotated_at"`
	Revoked    bool      `json:"revoked"`
	// IdleTTL is kept with the session so that a store can expire it
	// without knowing the realm's configuration.
	IdleTTL time.Duration `json:"idle_ttl"`
	// SignIn says how the person signed in; Update changes it.
	SignIn
}

// SignIn holds the facts about how a session was signed in that its tokens
// carry and the capabilities act on. Zero values mean "none". Stores keep
// it as one unit, so adding a field here needs no store change.
type SignIn struct {
	// AMR lists how the person authenticated (RFC 8176 values: pwd, otp,
	// hwk, mfa; fed for an identity provider); AuthTime is when.
	AMR      []string  `json:"amr,omitempty"`
	AuthTime time.Time `json:"auth_time,omitzero"`
	// JKT binds the session to a DPoP key (its RFC 7638 thumbprint).
	JKT string `json:"jkt,omitempty"`
	// IdP is the identity provider that signed the person in, IdPSID that
	// provider's session id (for back-channel logout).
	IdP    string `json:"idp,omitempty"`
	IdPSID string `json:"idp_sid,omitempty"`
	// Parent is the portal session this site session is linked to (single sign-on).
	Parent string `json:"parent,omitempty"`
}

// isZero says whether nothing is known about the sign-in.
func (s SignIn) isZero() bool {
	return len(s.AMR) == 0 && s.AuthTime.IsZero() && s.JKT == "" && s.IdP == "" && s.IdPSID == "" && s.Parent == ""
}

// deadline is the moment the session stops being refreshable, whichever
// of its absolute and idle lifetimes runs out first.
func (s Session) deadline() time.Time {
	d := s.Expires
	if s.IdleTTL > 0 {
		if idle := s.LastUsed.Add(s.IdleTTL); idle.Before(d) {
			d = idle
		}
	}
	return d
}

// Store keeps sessions. Implementations must make Rotate atomic: two
// concurrent calls for the same session see each other's effects.
type Store interface {
	// Create saves a new session and, in the same atomic step, revokes
	// the oldest live (unrevoked, unexpired) sessions of its user beyond
	// maxLive, the new one counted and never among them, so that however
	// many instances create sessions at once, no more than maxLive stay
	// live. It returns the ids it revoked; a shared store announces them to
	// every instance as Revoke does. maxLive <= 0 revokes nothing.
	Create(ctx context.Context, s Session, maxLive int) (evicted []string, err error)
	// Get returns a session, or ErrSessionNotFound.
	Get(ctx context.Context, sid string) (Session, error)
	// Rotate applies decideRotation to the session atomically and returns
	// the session as it is afterwards, with the decision's outcome.
	Rotate(ctx context.Context, sid string, presented uint64, now time.Time, grace time.Duration) (Session, rotation, error)
	// Revoke marks one session revoked. Revoking an unknown session is not an error.
	Revoke(ctx context.Context, sid string) error
	// RevokeUser revokes every session of a user and returns their ids.
	RevokeUser(ctx context.Context, user string) ([]string, error)
	// ListUser returns a user's sessions, revoked ones included, until they expire.
	ListUser(ctx context.Context, user string) ([]Session, error)
	// ListRevoked returns every revoked session not yet expired, so that a
	// starting instance knows which access tokens to refuse.
	ListRevoked(ctx context.Context) ([]Session, error)
	// Update applies change to a live session's SignIn atomically (a
	// step-up, a DPoP binding) and returns the session as it is afterwards;
	// nothing else of the session changes, whatever change does to it.
	// Unknown, revoked or expired sessions give ErrSessionNotFound.
	Update(ctx context.Context, sid string, change func(*SignIn) error) (Session, error)
	// Close releases the store's resources.
	Close() error
	// KV holds the realm's small records beside its sessions.
	KV
}

// purger is implemented by stores that need expired sessions removed
// (Redis expires keys by itself).
type purger interface {
	purge(now time.Time) error
}

// revocationFeed is implemented by stores shared by several Caddy
// instances: followRevocations calls add for every revocation any instance
// makes, until stop is closed.
type revocationFeed interface {
	followRevocations(stop <-chan struct{}, add func(sid string, until time.Time))
}

// Errors a Store returns.
var (
	// ErrSessionNotFound: no such session (never created, or expired and purged).
	ErrSessionNotFound = errors.New("session not found")
	// ErrStoreUnavailable wraps failures of the backing store itself, which
	// are answered 503 so that clients keep their tokens.
	ErrStoreUnavailable = errors.New("session store unavailable")
)

// errOutageLogged marks store errors whose outage the store has already
// logged, so the endpoint does not log them again on every request.
var errOutageLogged = errors.New("outage logged by the store")

// rotation is the outcome of presenting a refresh token's generation.
type rotation int

const (
	// rotated: the presented generation was current; the session moved on by one.
	rotated rotation = iota
	// graced: the previous generation within reuse_grace of its rotation;
	// the caller gets tokens for the current generation, nothing changes.
	graced
	// reused: an older generation; the session is now revoked.
	reused
	// refusedRevoked: the session was already revoked.
	refusedRevoked
	// refusedExpired: the session is past its absolute or idle lifetime.
	refusedExpired
	// caughtUp: the presented generation was ahead of the store's (the
	// store had lost rotations, see decideRotation); the session moved on
	// to the one after it, as a rotation does.
	caughtUp
)

// String is the rotation outcome as a metric label and log field.
func (r rotation) String() string {
	switch r {
	case rotated:
		return "rotated"
	case caughtUp:
		return "caught_up"
	case graced:
		return "graced"
	case reused:
		return "reused"
	case refusedRevoked:
		return "revoked"
	case refusedExpired:
		return "expired"
	}
	return "unknown"
}

// decideRotation is the whole refresh policy, shared by every store so that
// they behave identically. It changes s in place and reports the outcome;
// the store persists s when the outcome is rotated or reused.
//
// A generation ahead of the store's is not reuse: only this realm signs
// refresh tokens, so a token of generation g+k proves that the session was
// rotated to it, and the store has lost those rotations (an unreplicated
// write lost in a Redis failover loses exactly one, g+1; a Redis restarted
// from an older snapshot, or a restored backup, may lose more). The session
// catches up: it is rotated as if the store had kept them. There is no
// bound on k: any bound would log out exactly the sessions of the store
// that fell furthest behind, and an ahead token gives the attacker nothing
// a current one would not (it is the newest token; a copy of an older one
// still meets the reuse rule once the session has caught up). Presenting
// the previous generation within the grace is still graced, and anything
// older still reuse.
func decideRotation(s *Session, presented uint64, now time.Time, grace time.Duration) rotation {
	switch {
	case s.Revoked:
		return refusedRevoked
	case !now.Before(s.deadline()):
		return refusedExpired
	case presented >= s.Generation && presented < maxGeneration:
		outcome := rotated
		if presented > s.Generation {
			outcome = caughtUp
		}
		s.Generation = presented + 1
		s.RotatedAt = now
		s.LastUsed = now
		return outcome
	case presented+1 == s.Generation && grace > 0 && now.Sub(s.RotatedAt) <= grace:
		return graced
	default:
		s.Revoked = true
		return reused
	}
}

// maxGeneration bounds the generations a store accepts, so that every store
// computes with them exactly (the Redis scripts hold numbers as doubles,
// exact to 2^53). No session comes near: a rotation a second for a
// century is 2^32.
const maxGeneration = 1 << 52

// updateSignIn is Update's rule, shared by every store: the session must
// be live; change sees a copy of its SignIn, and only that is written back.
func updateSignIn(s *Session, now time.Time, change func(*SignIn) error) error {
	if s.Revoked || sessionExpired(*s, now) {
		return ErrSessionNotFound
	}
	next := s.SignIn
	next.AMR = slices.Clone(next.AMR)
	if err := change(&next); err != nil {
		return err
	}
	s.SignIn = next
	return nil
}

// changesSession says whether a rotation outcome must be written back.
func (r rotation) changesSession() bool { return r == rotated || r == caughtUp || r == reused }

// sessionExpired says whether a session may be purged: it can no longer be
// refreshed, so neither it nor its revocation matters any more. Revoked
// sessions are kept until their deadline so that reuse is still recognised.
func sessionExpired(s Session, now time.Time) bool {
	return !now.Before(s.deadline())
}

// sortSessions orders sessions oldest first, as every store lists them.
func sortSessions(list []Session) {
	sort.Slice(list, func(i, j int) bool { return list[i].Created.Before(list[j].Created) })
}

// beyondLimit is Create's eviction rule, shared by the stores that do it
// in Go (the Redis script does the same in Lua): of a user's sessions,
// the ids of the oldest live ones beyond maxLive, sid of the new session
// never among them.
func beyondLimit(list []Session, sid string, maxLive int, now time.Time) []string {
	if maxLive <= 0 {
		return nil
	}
	var live []Session
	for _, s := range list {
		if !s.Revoked && !sessionExpired(s, now) && s.ID != sid {
			live = append(live, s)
		}
	}
	excess := len(live) + 1 - maxLive
	if excess <= 0 {
		return nil
	}
	sort.Slice(live, func(i, j int) bool {
		if !live[i].Created.Equal(live[j].Created) {
			return live[i].Created.Before(live[j].Created)
		}
		return live[i].ID < live[j].ID
	})
	ids := make([]string, excess)
	for i, s := range live[:excess] {
		ids[i] = s.ID
	}
	return ids
}

// StoreConfig chooses where sessions are kept.
type StoreConfig struct {
	// Backend is `bolt` (default: an embedded database file), `redis`
	// (one Redis server shared by several Caddy instances),
	// `redis_sentinel` (a Redis master found through Redis Sentinel, which
	// follows failovers), `redis_cluster` (a Redis Cluster) or `memory`
	// (lost on restart; for tests).
	Backend string `json:"backend,omitempty"`

	// Path of the bolt database file. Default: `token_auth/sessions.db`
	// under Caddy's data directory. Placeholders such as `{env.X}` work.
	Path string `json:"path,omitempty"`

	// URL of the Redis server (6.2 or newer), `redis://` or `rediss://`
	// (TLS), with user, password and database number if needed, e.g.
	// `rediss://:secret@cache:6380/2`. Placeholders such as `{env.REDIS_URL}`
	// work. Every Caddy instance pointing at it shares the realm's sessions
	// and sees its revocations within seconds.
	URL string `json:"url,omitempty"`

	// Master is the name the sentinels know the master by (`sentinel
	// monitor <name> ...` in sentinel.conf), for `redis_sentinel`.
	Master string `json:"master,omitempty"`

	// Sentinels are the URLs of the sentinels, for `redis_sentinel`, e.g.
	// `redis://:secret@sentinel1:26379/2`, `redis://sentinel2:26379`: any
	// one that answers will do; list them all. The user, password and
	// database (on the first URL) are those of the Redis master and
	// replicas; a sentinel's own password goes in the query parameter
	// `sentinel_password` (and `sentinel_username`). `rediss://` uses TLS
	// for the sentinels and the servers alike. Placeholders work.
	Sentinels []string `json:"sentinels,omitempty"`

	// Nodes are URLs of Redis Cluster nodes, for `redis_cluster`, e.g.
	// `rediss://:secret@node1:6379`, `rediss://node2:6379`: seeds from
	// which the client learns the whole cluster, so a few suffice; list
	// several so that one being down does not stop a start. User and
	// password (on the first URL) are the cluster's; a cluster has only
	// database 0. Placeholders work.
	Nodes []string `json:"nodes,omitempty"`
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
	c.Master = repl.ReplaceKnown(c.Master, "")
	c.Sentinels = replaceEach(repl, c.Sentinels)
	c.Nodes = replaceEach(repl, c.Nodes)
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

// resolvedOrDefault resolves a possibly absent store config.
func (c *StoreConfig) resolvedOrDefault() StoreConfig {
	if c == nil {
		return StoreConfig{}.resolved()
	}
	return c.resolved()
}

func (c StoreConfig) validate() error {
	switch c.backend() {
	case "bolt", "memory":
		return nil
	case "redis":
		if c.URL == "" {
			return fmt.Errorf("store redis needs a URL: store redis redis://host:6379/0")
		}
		if strings.Contains(c.URL, "{") {
			return nil // a placeholder, checked once resolved
		}
		_, err := parseRedisURL(c.URL)
		return err
	case backendRedisSentinel, backendRedisCluster:
		return c.validateRedisHA()
	default:
		return fmt.Errorf("unknown store backend %q (want bolt, redis, redis_sentinel, redis_cluster or memory)", c.Backend)
	}
}

func (c StoreConfig) poolKey() string {
	return strings.Join(append(append([]string{c.Backend, c.Path, c.URL, c.Master}, c.Sentinels...), c.Nodes...), "\x00")
}

// open creates the realm's store; release gives back shared resources.
func (c StoreConfig) open(ctx caddy.Context, realm string, logger *zap.Logger) (Store, func(), error) {
	switch c.Backend {
	case "memory":
		return newMemoryStore(), nil, nil
	case "redis":
		store, err := newRedisStore(c.URL, realm, logger)
		if err != nil {
			return nil, nil, err
		}
		return store, nil, nil
	case backendRedisSentinel, backendRedisCluster:
		store, err := c.openRedisHA(realm, logger)
		if err != nil {
			return nil, nil, err
		}
		return store, nil, nil
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

// boltPool holds open bbolt databases by file path; several realms may
// share one file.
var boltPool = caddy.NewUsagePool()

type boltFile struct{ db *bolt.DB }

func (f *boltFile) Destruct() error { return f.db.Close() }
