package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var testBucket = []byte("t")

func openTestBolt(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := openBoltDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(testBucket)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// holdFirstCommit makes the first call of a group committer block until n
// more calls are pending, so that those n must share the next commit.
func holdFirstCommit(t *testing.T, g *groupCommitter, n int) (release func(), firstDone <-chan error) {
	t.Helper()
	gate := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- g.do(func(tx *bolt.Tx) error {
			<-gate
			return tx.Bucket(testBucket).Put([]byte("first"), []byte("1"))
		})
	}()
	// wait until the first call is being committed (taken off pending)
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.running && len(g.pending) == 0 })
	return func() {
		waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.pending) == n })
		close(gate)
	}, done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached in 10s")
}

func TestGroupCommitterSharesOneCommitAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openTestBolt(t, path)
	g := newGroupCommitter(db)
	const n = 31
	release, firstDone := holdFirstCommit(t, g, n)
	txIDs := make([]int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := g.do(func(tx *bolt.Tx) error {
				txIDs[i] = tx.ID()
				return tx.Bucket(testBucket).Put([]byte(fmt.Sprintf("k%d", i)), []byte("v"))
			})
			if err != nil {
				t.Error(err)
			}
		}(i)
	}
	release()
	wg.Wait()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	for i := range txIDs {
		if txIDs[i] != txIDs[0] {
			t.Fatalf("calls pending together were committed in different transactions: %v", txIDs)
		}
	}
	// every answered write is on disk
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestBolt(t, path)
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		for i := 0; i < n; i++ {
			if tx.Bucket(testBucket).Get([]byte(fmt.Sprintf("k%d", i))) == nil {
				t.Errorf("k%d lost after reopening", i)
			}
		}
		return nil
	})
}

func TestGroupCommitterFailureFailsOnlyItsCall(t *testing.T) {
	db := openTestBolt(t, filepath.Join(t.TempDir(), "g.db"))
	defer db.Close()
	g := newGroupCommitter(db)
	release, firstDone := holdFirstCommit(t, g, 3)
	boom := errors.New("boom")
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = g.do(func(tx *bolt.Tx) error {
				if err := tx.Bucket(testBucket).Put([]byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
					return err
				}
				if i == 1 {
					return boom // after writing: the write must not survive
				}
				return nil
			})
		}(i)
	}
	release()
	wg.Wait()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], boom) {
		t.Fatalf("errors %v; want only call 1 to fail", errs)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(testBucket)
		if b.Get([]byte("k0")) == nil || b.Get([]byte("k2")) == nil || b.Get([]byte("k1")) != nil {
			t.Error("want k0 and k2 written and k1 rolled back")
		}
		return nil
	})
}

func TestGroupCommitterReportsClosedDatabase(t *testing.T) {
	db := openTestBolt(t, filepath.Join(t.TempDir(), "g.db"))
	g := newGroupCommitter(db)
	_ = db.Close()
	if err := g.do(func(*bolt.Tx) error { return nil }); !errors.Is(err, bolt.ErrDatabaseNotOpen) {
		t.Fatalf("want ErrDatabaseNotOpen, got %v", err)
	}
}

func TestBoltRotateUnknownSessionSharesCommitHarmlessly(t *testing.T) {
	db, err := openBoltDB(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := newBoltStore(db, "r")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	live := Session{ID: "live", User: "u", Created: now, LastUsed: now, Expires: now.Add(time.Hour), Generation: 1}
	if _, err := store.Create(ctx, live, 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var liveErr, ghostErr error
	var rotatedTo uint64
	wg.Add(2)
	go func() {
		defer wg.Done()
		var s Session
		s, _, liveErr = store.Rotate(ctx, "live", 1, now, 0)
		rotatedTo = s.Generation
	}()
	go func() {
		defer wg.Done()
		_, _, ghostErr = store.Rotate(ctx, "ghost", 1, now, 0)
	}()
	wg.Wait()
	if liveErr != nil || rotatedTo != 2 {
		t.Fatalf("live rotation: %v, generation %d", liveErr, rotatedTo)
	}
	if !errors.Is(ghostErr, ErrSessionNotFound) || errors.Is(ghostErr, ErrStoreUnavailable) {
		t.Fatalf("unknown session: want ErrSessionNotFound, got %v", ghostErr)
	}
}

// TestBoltStorePersistsAndSharesFile: sessions survive closing and
// reopening the file, and two realms in one file stay apart.
func TestBoltStorePersistsAndSharesFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := openBoltDB(path)
	if err != nil {
		t.Fatal(err)
	}
	one, _ := newBoltStore(db, "one")
	two, _ := newBoltStore(db, "two")
	now := time.Now()
	if _, err := one.Create(ctx, sessionFixture("s1", "alice", now), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Get(ctx, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("realm two sees realm one's session: %v", err)
	}
	if _, _, err := one.Rotate(ctx, "s1", 1, now, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = openBoltDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	one, _ = newBoltStore(db, "one")
	got, err := one.Get(ctx, "s1")
	if err != nil || got.Generation != 2 || got.User != "alice" {
		t.Fatalf("after reopening: %+v %v", got, err)
	}

	// a failing database is reported as unavailable, not as a missing session
	_ = db.Close()
	if _, err := one.Get(ctx, "s1"); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("closed database: %v", err)
	}
	if _, _, err := one.Rotate(ctx, "s1", 2, now, 0); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("closed database on Rotate: %v", err)
	}
}
