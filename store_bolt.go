package tokenauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltStore keeps a realm's sessions in an embedded bbolt database file.
// One file may hold several realms, each in its own bucket; the *bolt.DB
// is opened once per process and shared (boltPool).
type boltStore struct {
	db     *bolt.DB
	realm  []byte
	commit *groupCommitter // shares commits among concurrent writers
}

// Bucket layout, under a top-level bucket named after the realm:
//
//	sessions/<sid>          -> JSON Session
//	users/<user>/<sid>      -> empty, an index for listing and global logout
//	live/<user>/<sid>       -> empty, the user's sessions not known to be
//	                           revoked or expired, for max_sessions
var (
	bucketSessions = []byte("sessions")
	bucketUsers    = []byte("users")
	bucketLive     = []byte("live")
)

// openBoltDB opens (creating if needed) the database file at path. bbolt
// holds an exclusive file lock, so a second Open in the same process would
// block forever; callers go through boltPool instead.
func openBoltDB(path string) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating directory for session database: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		// The free-page list is not written on each commit but rebuilt
		// when the file is opened (a scan of its pages): one page less to
		// write and sync per commit. What a commit holds is as durable as
		// before (etcd runs bbolt so).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("opening session database %s: %w", path, err)
	}
	return db, nil
}

func newBoltStore(db *bolt.DB, realm string) (*boltStore, error) {
	s := &boltStore{db: db, realm: []byte(realm), commit: newGroupCommitter(db)}
	err := db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(s.realm)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketSessions, bucketUsers, bucketLive} {
			if _, err := root.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return s, nil
}

// unavailable marks an error of the database itself (closed file, full
// disk, I/O error) so that the endpoint answers 503 rather than 401.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrSessionNotFound) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

func (b *boltStore) buckets(tx *bolt.Tx) (sessions, users *bolt.Bucket) {
	root := tx.Bucket(b.realm)
	return root.Bucket(bucketSessions), root.Bucket(bucketUsers)
}

func (b *boltStore) Create(_ context.Context, s Session, maxLive int) (evicted []string, err error) {
	now := time.Now()
	err = b.commit.do(func(tx *bolt.Tx) error {
		// may run more than once (groupCommitter): recompute evicted
		live, err := b.liveSessions(tx, s.User, now)
		if err != nil {
			return err
		}
		evicted = beyondLimit(live.sessions, s.ID, maxLive, now)
		for _, sid := range evicted {
			if err := b.revoke(tx, sid); err != nil {
				return err
			}
			if err := live.index.Delete([]byte(sid)); err != nil {
				return err
			}
		}
		if !s.Revoked {
			if err := live.index.Put([]byte(s.ID), nil); err != nil {
				return err
			}
		}
		return b.put(tx, s)
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return evicted, nil
}

func (b *boltStore) put(tx *bolt.Tx, s Session) error {
	if err := b.putRecord(tx, s); err != nil {
		return err
	}
	_, users := b.buckets(tx)
	userBucket, err := users.CreateBucketIfNotExists([]byte(s.User))
	if err != nil {
		return err
	}
	return userBucket.Put([]byte(s.ID), nil)
}

// putRecord writes the session record alone: for a session that exists,
// whose user (and so index entry) never changes. Rewriting the index entry
// on every rotation dirtied one more page per commit.
func (b *boltStore) putRecord(tx *bolt.Tx, s Session) error {
	sessions, _ := b.buckets(tx)
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return sessions.Put([]byte(s.ID), data)
}

func (b *boltStore) get(tx *bolt.Tx, sid string) (Session, error) {
	sessions, _ := b.buckets(tx)
	data := sessions.Get([]byte(sid))
	if data == nil {
		return Session{}, ErrSessionNotFound
	}
	var s Session
	if err := json.Unmarshal(data, &s); err != nil {
		return Session{}, fmt.Errorf("decoding session %q: %w", sid, err)
	}
	return s, nil
}

func (b *boltStore) Get(_ context.Context, sid string) (s Session, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		s, err = b.get(tx, sid)
		return err
	})
	return s, unavailable(err)
}

func (b *boltStore) Rotate(_ context.Context, sid string, presented uint64, now time.Time, grace time.Duration) (s Session, outcome rotation, err error) {
	// Concurrent rotations share one commit (and one fsync); the function
	// may be retried, so it recomputes everything it returns. An unknown
	// session is an answer, not a failure: it must not roll back the
	// rotations sharing its commit.
	err = b.commit.do(func(tx *bolt.Tx) error {
		s, err = b.get(tx, sid)
		if errors.Is(err, ErrSessionNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		outcome = decideRotation(&s, presented, now, grace)
		if outcome.changesSession() {
			return b.putRecord(tx, s)
		}
		return nil
	})
	if err == nil && s.ID == "" {
		err = ErrSessionNotFound
	}
	return s, outcome, unavailable(err)
}

func (b *boltStore) Update(_ context.Context, sid string, change func(*SignIn) error) (s Session, err error) {
	// An unknown session, or change's own error, is an answer, not a
	// failure: it must not roll back the commits sharing its group.
	var answer error
	err = b.commit.do(func(tx *bolt.Tx) error {
		answer = nil
		s, err = b.get(tx, sid)
		if errors.Is(err, ErrSessionNotFound) {
			answer = err
			return nil
		}
		if err != nil {
			return err
		}
		if answer = updateSignIn(&s, time.Now(), change); answer != nil {
			return nil
		}
		return b.putRecord(tx, s)
	})
	if err != nil {
		return Session{}, unavailable(err)
	}
	if answer != nil {
		return Session{}, answer
	}
	return s, nil
}

func (b *boltStore) Revoke(_ context.Context, sid string) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		return b.revoke(tx, sid)
	})
	if errors.Is(err, ErrSessionNotFound) {
		return nil
	}
	return unavailable(err)
}

func (b *boltStore) revoke(tx *bolt.Tx, sid string) error {
	s, err := b.get(tx, sid)
	if err != nil || s.Revoked {
		return err
	}
	s.Revoked = true
	return b.putRecord(tx, s)
}

func (b *boltStore) RevokeUser(_ context.Context, user string) (ids []string, err error) {
	err = b.db.Update(func(tx *bolt.Tx) error {
		ids = nil
		for _, s := range b.userSessions(tx, user) {
			if s.Revoked {
				continue
			}
			if err := b.revoke(tx, s.ID); err != nil {
				return err
			}
			ids = append(ids, s.ID)
		}
		return nil
	})
	return ids, unavailable(err)
}

// userLive is a user's live index and the live sessions it names.
type userLive struct {
	index    *bolt.Bucket
	sessions []Session
}

// liveSessions reads the user's live index, dropping the entries whose
// session is gone, revoked or expired, so that Create reads about
// max_sessions sessions however many revoked ones the user has. A user
// without an index yet (sessions created before it existed) gets one from
// the user index.
func (b *boltStore) liveSessions(tx *bolt.Tx, user string, now time.Time) (userLive, error) {
	root := tx.Bucket(b.realm)
	seeding := root.Bucket(bucketLive).Bucket([]byte(user)) == nil
	index, err := root.Bucket(bucketLive).CreateBucketIfNotExists([]byte(user))
	if err != nil {
		return userLive{}, err
	}
	candidates := b.userSessions(tx, user)
	if !seeding {
		var gone []string
		candidates, gone = b.sessionsNamed(tx, index)
		for _, sid := range gone {
			if err := index.Delete([]byte(sid)); err != nil {
				return userLive{}, err
			}
		}
	}
	var out userLive
	out.index = index
	for _, s := range candidates {
		if s.Revoked || sessionExpired(s, now) {
			if err := index.Delete([]byte(s.ID)); err != nil {
				return userLive{}, err
			}
			continue
		}
		if err := index.Put([]byte(s.ID), nil); err != nil { // seeding; a no-op otherwise
			return userLive{}, err
		}
		out.sessions = append(out.sessions, s)
	}
	return out, nil
}

// userSessions reads the sessions the user index names, skipping entries
// whose session has already been purged.
func (b *boltStore) userSessions(tx *bolt.Tx, user string) []Session {
	_, users := b.buckets(tx)
	out, _ := b.sessionsNamed(tx, users.Bucket([]byte(user)))
	return out
}

// sessionsNamed reads the sessions an index bucket names (nil: none);
// gone lists the entries whose session has already been purged.
func (b *boltStore) sessionsNamed(tx *bolt.Tx, index *bolt.Bucket) (out []Session, gone []string) {
	if index == nil {
		return nil, nil
	}
	_ = index.ForEach(func(sid, _ []byte) error {
		if s, err := b.get(tx, string(sid)); err == nil {
			out = append(out, s)
		} else {
			gone = append(gone, string(sid))
		}
		return nil
	})
	return out, gone
}

func (b *boltStore) ListUser(_ context.Context, user string) (out []Session, err error) {
	now := time.Now()
	err = b.db.View(func(tx *bolt.Tx) error {
		for _, s := range b.userSessions(tx, user) {
			if !sessionExpired(s, now) {
				out = append(out, s)
			}
		}
		return nil
	})
	sortSessions(out)
	return out, unavailable(err)
}

func (b *boltStore) ListRevoked(_ context.Context) (out []Session, err error) {
	now := time.Now()
	err = b.db.View(func(tx *bolt.Tx) error {
		sessions, _ := b.buckets(tx)
		return sessions.ForEach(func(_, data []byte) error {
			// a cheap pre-check saves decoding every live session
			if !bytes.Contains(data, []byte(`"revoked":true`)) {
				return nil
			}
			var s Session
			if json.Unmarshal(data, &s) == nil && !sessionExpired(s, now) {
				out = append(out, s)
			}
			return nil
		})
	})
	return out, unavailable(err)
}

// purge deletes expired sessions and their index entries.
func (b *boltStore) purge(now time.Time) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		sessions, users := b.buckets(tx)
		live := tx.Bucket(b.realm).Bucket(bucketLive)
		var dead []Session
		err := sessions.ForEach(func(key, data []byte) error {
			var s Session
			if json.Unmarshal(data, &s) != nil || sessionExpired(s, now) {
				s.ID = string(key) // an undecodable record is dropped by its key
				dead = append(dead, s)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := b.purgeTemp(tx, now); err != nil {
			return err
		}
		for _, s := range dead {
			if err := sessions.Delete([]byte(s.ID)); err != nil {
				return err
			}
			for _, index := range []*bolt.Bucket{users.Bucket([]byte(s.User)), live.Bucket([]byte(s.User))} {
				if index == nil {
					continue
				}
				if err := index.Delete([]byte(s.ID)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return unavailable(err)
}

// Close does nothing: the database is shared and closed by the storePool
// when the last realm using it goes away.
func (b *boltStore) Close() error { return nil }

// groupCommitter lets concurrent writers share bbolt commits without
// waiting for a timer. bbolt's own Batch collects calls for up to
// MaxBatchDelay (10 ms) before committing, so a lone refresh waits 10 ms
// plus an fsync, and 32 concurrent clients top out near 32 rotations per
// 10 ms. Here a commit starts as soon as there is work and no commit is
// running; whatever arrives while it runs goes into the next one. A lone
// writer pays one fsync; n concurrent writers share one.
//
// Durability is bbolt's: do returns only after the transaction holding the
// caller's changes has been committed (and synced, unless the database was
// opened with NoSync).
//
// Before taking a group, the committer gathers (gather): it yields the
// processor so that requests already under way reach do first, then, if
// fewer calls are pending than its last group held, waits for that many,
// at most half as long as its last commit took (and at most
// maxGatherWait). With Caddy on one core, the 32 handlers woken by one
// commit otherwise trickled back into commits of a few, each paying a
// commit's own CPU (page writes, two fsync system calls) for little. A
// lone writer never waits (its last group was one call); when the load
// drops, one commit waits, and the next ones expect its smaller group.
type groupCommitter struct {
	db      *bolt.DB
	mu      sync.Mutex
	pending []*commitCall
	running bool
	// lastSize and lastTook describe the last commit; want, when not 0, is
	// the pending count that wakes a waiting gather through full.
	lastSize int
	lastTook time.Duration
	want     int
	full     chan struct{}
	// commits and calls count the transactions committed and the calls
	// they held (for the benchmarks' calls per commit).
	commits, calls atomic.Int64
}

// maxGatherYields bounds the yields before a group is taken: each one
// that brought more calls is followed by another.
const maxGatherYields = 4

// maxGatherWait bounds how long a commit waits for the calls of a group
// as large as the last.
const maxGatherWait = 2 * time.Millisecond

type commitCall struct {
	fn   func(*bolt.Tx) error
	done chan error
}

func newGroupCommitter(db *bolt.DB) *groupCommitter {
	return &groupCommitter{db: db, full: make(chan struct{}, 1)}
}

// do runs fn in a read-write transaction shared with other callers and
// returns once it is committed. As with bolt.DB.Batch, fn may run more
// than once (when another function of its group fails, the group is
// rolled back and each function is retried alone), so it must be
// idempotent and set everything it returns on every run; an error from fn
// fails only its own call.
func (g *groupCommitter) do(fn func(*bolt.Tx) error) error {
	call := &commitCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, call)
	if !g.running {
		g.running = true
		go g.run()
	}
	if g.want > 0 && len(g.pending) >= g.want {
		g.want = 0
		select {
		case g.full <- struct{}{}:
		default:
		}
	}
	g.mu.Unlock()
	return <-call.done
}

// run commits groups until nothing is pending.
func (g *groupCommitter) run() {
	for {
		g.gather()
		g.mu.Lock()
		group := g.pending
		g.pending = nil
		if len(group) == 0 {
			g.running = false
			g.lastSize = 0 // idle: the next caller is a lone one until shown otherwise
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.commit(group)
	}
}

// gather lets the calls of the next group arrive (see groupCommitter):
// it yields while that brings more calls, at most maxGatherYields times,
// then waits for as many calls as the last group held, bounded in time.
func (g *groupCommitter) gather() {
	for range maxGatherYields {
		before := g.pendingCalls()
		runtime.Gosched()
		if g.pendingCalls() == before {
			break
		}
	}
	g.mu.Lock()
	wait := min(g.lastTook/2, maxGatherWait)
	if len(g.pending) >= g.lastSize || wait <= 0 {
		g.mu.Unlock()
		return
	}
	g.want = g.lastSize
	g.mu.Unlock()
	timer := time.NewTimer(wait)
	select {
	case <-g.full:
	case <-timer.C:
	}
	timer.Stop()
	g.mu.Lock()
	g.want = 0
	g.mu.Unlock()
	select { // a signal sent as the timer fired
	case <-g.full:
	default:
	}
}

func (g *groupCommitter) pendingCalls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

func (g *groupCommitter) commit(group []*commitCall) {
	g.commits.Add(1)
	g.calls.Add(int64(len(group)))
	start := time.Now()
	defer func() {
		g.mu.Lock()
		g.lastSize, g.lastTook = len(group), time.Since(start)
		g.mu.Unlock()
	}()
	failed := -1
	err := g.db.Update(func(tx *bolt.Tx) error {
		for i, c := range group {
			if err := c.fn(tx); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, c := range group {
			c.done <- err
		}
		return
	}
	// The group was rolled back. Without its culprit (if known), the
	// others are retried alone, each with its own outcome.
	for i, c := range group {
		if i == failed {
			c.done <- err
			continue
		}
		c.done <- g.db.Update(c.fn)
	}
}
