package tokenauth

// The KV conformance suite: memory, bolt (a real file) and Redis (a real
// redis-server) keep Temp values and records identically.

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestKVTempValues(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, st Store) {
		if _, found, err := st.GetTemp(ctx, "t:absent"); err != nil || found {
			t.Fatalf("GetTemp of nothing = found %v, %v", found, err)
		}
		if err := st.PutTemp(ctx, "t:a", []byte("one"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := st.PutTemp(ctx, "t:a", []byte("two"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, found, err := st.GetTemp(ctx, "t:a"); err != nil || !found || string(v) != "two" {
			t.Fatalf("GetTemp = %q %v %v, want the replacing value", v, found, err)
		}
		if v, found, err := st.TakeTemp(ctx, "t:a"); err != nil || !found || string(v) != "two" {
			t.Fatalf("TakeTemp = %q %v %v", v, found, err)
		}
		if _, found, err := st.TakeTemp(ctx, "t:a"); err != nil || found {
			t.Fatalf("second TakeTemp found %v, %v: a taken value must be gone", found, err)
		}
		if _, found, _ := st.GetTemp(ctx, "t:a"); found {
			t.Fatal("GetTemp finds a taken value")
		}
	})
}

func TestKVTempExpiry(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, st Store) {
		if err := st.PutTemp(ctx, "t:short", []byte("x"), 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if first, err := st.ClaimTemp(ctx, "t:claim", 20*time.Millisecond); err != nil || !first {
			t.Fatalf("ClaimTemp = %v, %v", first, err)
		}
		time.Sleep(60 * time.Millisecond)
		if _, found, _ := st.GetTemp(ctx, "t:short"); found {
			t.Error("GetTemp finds an expired value")
		}
		if _, found, _ := st.TakeTemp(ctx, "t:short"); found {
			t.Error("TakeTemp finds an expired value")
		}
		if first, err := st.ClaimTemp(ctx, "t:claim", time.Minute); err != nil || !first {
			t.Errorf("ClaimTemp after expiry = %v, %v; want a new first claim", first, err)
		}
	})
}

func TestKVTakeAndClaimAreOnceUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, st Store) {
		if err := st.PutTemp(ctx, "t:once", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		var took, claimed atomic.Int32
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, found, err := st.TakeTemp(ctx, "t:once"); err == nil && found {
					took.Add(1)
				}
				if first, err := st.ClaimTemp(ctx, "t:jti", time.Minute); err == nil && first {
					claimed.Add(1)
				}
			}()
		}
		wg.Wait()
		if took.Load() != 1 || claimed.Load() != 1 {
			t.Fatalf("32 concurrent calls: %d took, %d claimed first; want exactly 1 each", took.Load(), claimed.Load())
		}
	})
}

func TestKVRecords(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, st Store) {
		if recs, err := st.Records(ctx, "passkey", "alice"); err != nil || recs == nil || len(recs) != 0 {
			t.Fatalf("Records of nobody = %v, %v; want an empty map", recs, err)
		}
		put := func(kind, owner, id, v string) {
			t.Helper()
			if err := st.PutRecord(ctx, kind, owner, id, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		put("passkey", "alice", "c1", "one")
		put("passkey", "alice", "c2", "two")
		put("passkey", "alice", "c1", "one again")
		put("passkey", "bob", "c1", "bob's")
		put("totp", "alice", "c1", "other kind")
		want := map[string]string{"c1": "one again", "c2": "two"}
		if got := records(t, st, "passkey", "alice"); !equalRecords(got, want) {
			t.Fatalf("alice's passkeys = %v, want %v", got, want)
		}
		if err := st.DeleteRecord(ctx, "passkey", "alice", "c2"); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteRecord(ctx, "passkey", "alice", "missing"); err != nil {
			t.Fatalf("deleting a missing record: %v", err)
		}
		if got := records(t, st, "passkey", "alice"); !equalRecords(got, map[string]string{"c1": "one again"}) {
			t.Fatalf("after DeleteRecord: %v", got)
		}
		if err := st.DeleteRecords(ctx, "passkey", "alice"); err != nil {
			t.Fatal(err)
		}
		if got := records(t, st, "passkey", "alice"); len(got) != 0 {
			t.Fatalf("after DeleteRecords: %v", got)
		}
		if got := records(t, st, "passkey", "bob"); !equalRecords(got, map[string]string{"c1": "bob's"}) {
			t.Fatalf("another owner's records changed: %v", got)
		}
		if got := records(t, st, "totp", "alice"); !equalRecords(got, map[string]string{"c1": "other kind"}) {
			t.Fatalf("another kind's records changed: %v", got)
		}
		if err := st.DeleteRecords(ctx, "passkey", "nobody"); err != nil {
			t.Fatalf("DeleteRecords of nobody: %v", err)
		}
	})
}

func records(t *testing.T, st Store, kind, owner string) map[string]string {
	t.Helper()
	recs, err := st.Records(context.Background(), kind, owner)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(recs))
	for id, v := range recs {
		out[id] = string(v)
	}
	return out
}

func equalRecords(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestSessionSignInIsKeptAndUpdated(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		s := newTestSession("alice", now)
		s.SignIn = SignIn{AMR: []string{"pwd"}, AuthTime: now, IdP: "corp", IdPSID: "p-1"}
		mustCreate(t, st, s)
		if got := mustGet(t, st, s.ID); !slices.Equal(got.AMR, []string{"pwd"}) || !got.AuthTime.Equal(now) || got.IdP != "corp" || got.IdPSID != "p-1" {
			t.Fatalf("SignIn after Create = %+v", got.SignIn)
		}
		rotatedTo, outcome, err := st.Rotate(ctx, s.ID, s.Generation, now, 0)
		if err != nil || outcome != rotated || rotatedTo.IdP != "corp" {
			t.Fatalf("Rotate = %v, %v, SignIn %+v", outcome, err, rotatedTo.SignIn)
		}
		later := now.Add(time.Minute)
		updated, err := st.Update(ctx, s.ID, func(in *SignIn) error {
			in.AMR = append(in.AMR, "otp", "mfa")
			in.AuthTime = later
			in.JKT = "thumb"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got := mustGet(t, st, s.ID)
		for _, x := range []Session{updated, got} {
			if !slices.Equal(x.AMR, []string{"pwd", "otp", "mfa"}) || !x.AuthTime.Equal(later) || x.JKT != "thumb" || x.IdP != "corp" {
				t.Fatalf("SignIn after Update = %+v", x.SignIn)
			}
			if x.Generation != rotatedTo.Generation || x.User != "alice" {
				t.Fatalf("Update changed more than the sign-in: %+v", x)
			}
		}
	})
}

func TestSessionUpdateRefusals(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, st Store) {
		now := clock()
		if _, err := st.Update(ctx, "no-such-session", func(*SignIn) error { return nil }); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("Update of an unknown session: %v", err)
		}
		s := mustCreate(t, st, newTestSession("bob", now))
		refusal := errors.New("refused by the caller")
		if _, err := st.Update(ctx, s.ID, func(in *SignIn) error { in.JKT = "x"; return refusal }); err != refusal {
			t.Fatalf("change's own error came back as %v", err)
		}
		if got := mustGet(t, st, s.ID); got.JKT != "" {
			t.Fatalf("a refused change was written: %+v", got.SignIn)
		}
		if err := st.Revoke(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Update(ctx, s.ID, func(*SignIn) error { return nil }); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("Update of a revoked session: %v", err)
		}
	})
}

func TestBoltKVSurvivesReopenAndPurgesExpired(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := openBoltDB(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := newBoltStore(db, "kv")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecord(ctx, "passkey", "alice", "c1", []byte("cred")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTemp(ctx, "t:gone", []byte("x"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTemp(ctx, "t:kept", []byte("y"), time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := st.purge(time.Now()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if db, err = openBoltDB(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if st, err = newBoltStore(db, "kv"); err != nil {
		t.Fatal(err)
	}
	if got := records(t, st, "passkey", "alice"); got["c1"] != "cred" {
		t.Fatalf("record after reopen: %v", got)
	}
	if v, found, _ := st.GetTemp(ctx, "t:kept"); !found || string(v) != "y" {
		t.Fatalf("live Temp value after reopen: %q %v", v, found)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		temp, _, _ := st.kvBuckets(tx)
		if temp.Get([]byte("t:gone")) != nil {
			t.Error("purge left an expired Temp value in the file")
		}
		return nil
	})
}

func TestKVStoreOutageIsUnavailable(t *testing.T) {
	ctx := context.Background()
	db, err := openBoltDB(filepath.Join(t.TempDir(), "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := newBoltStore(db, "kv")
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	checks := map[string]error{
		"PutTemp":   st.PutTemp(ctx, "k", nil, time.Minute),
		"PutRecord": st.PutRecord(ctx, "k", "o", "i", nil),
	}
	_, _, checks["GetTemp"] = st.GetTemp(ctx, "k")
	_, _, checks["TakeTemp"] = st.TakeTemp(ctx, "k")
	_, checks["ClaimTemp"] = st.ClaimTemp(ctx, "k", time.Minute)
	_, checks["Records"] = st.Records(ctx, "k", "o")
	checks["DeleteRecord"] = st.DeleteRecord(ctx, "k", "o", "i")
	checks["DeleteRecords"] = st.DeleteRecords(ctx, "k", "o")
	_, checks["Update"] = st.Update(ctx, "sid", func(*SignIn) error { return nil })
	for name, err := range checks {
		if !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("%s on a closed database: %v, want ErrStoreUnavailable", name, err)
		}
	}
}
