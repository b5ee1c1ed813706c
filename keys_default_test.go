package tokenauth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestKeysGeneratedOnceUnderLock: instances that all find no key at the
// same moment (held together at a barrier right after that first look)
// still end up with one key, made by exactly one of them.
func TestKeysGeneratedOnceUnderLock(t *testing.T) {
	dir := t.TempDir()
	const n = 5
	var arrived sync.WaitGroup
	arrived.Add(n)
	afterKeyMissing = func() { arrived.Done(); arrived.Wait() }
	defer func() { afterKeyMissing = func() {} }()

	type result struct {
		pem     []byte
		created bool
		err     error
	}
	results := make([]result, n)
	var done sync.WaitGroup
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			storage := &certmagic.FileStorage{Path: dir} // one per "instance"
			pem, created, err := loadOrCreateGeneratedKey(context.Background(), storage, "default")
			results[i] = result{pem, created, err}
		}()
	}
	done.Wait()
	creators := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("instance %d: %v", i, r.err)
		}
		if r.created {
			creators++
		}
		if !bytes.Equal(r.pem, results[0].pem) {
			t.Fatalf("instance %d got another key than instance 0", i)
		}
	}
	if creators != 1 {
		t.Fatalf("%d instances created a key, want 1", creators)
	}
	stored, err := (&certmagic.FileStorage{Path: dir}).Load(context.Background(), "token_auth/default/signing_key.pem")
	if err != nil || !bytes.Equal(stored, results[0].pem) {
		t.Fatalf("stored key differs from the one in use: %v", err)
	}
	if _, err := asymmetricKeyFromPEM("ed25519", stored, true); err != nil {
		t.Fatalf("stored key unusable: %v", err)
	}
}

// TestKeysGeneratedPerRealm: each realm has its own key at its own path;
// the key is reused on the next load; odd realm names cannot escape.
func TestKeysGeneratedPerRealm(t *testing.T) {
	for realm, want := range map[string]string{
		"default":   "token_auth/default/signing_key.pem",
		"api.v2_x-": "token_auth/api.v2_x-/signing_key.pem",
		"../../etc": "token_auth/~2e2e2f2e2e2f657463/signing_key.pem",
		".":         "token_auth/~2e/signing_key.pem",
		"a/b":       "token_auth/~612f62/signing_key.pem",
	} {
		if got := generatedKeyPath(realm); got != want {
			t.Errorf("realm %q: path %s, want %s", realm, got, want)
		}
	}
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	a1, created, err := loadOrCreateGeneratedKey(ctx, storage, "a")
	if err != nil || !created {
		t.Fatalf("first load: created %v, %v", created, err)
	}
	a2, created, err := loadOrCreateGeneratedKey(ctx, storage, "a")
	if err != nil || created || !bytes.Equal(a1, a2) {
		t.Fatalf("second load: created %v, same %v, %v", created, bytes.Equal(a1, a2), err)
	}
	b, _, err := loadOrCreateGeneratedKey(ctx, storage, "b")
	if err != nil || bytes.Equal(a1, b) {
		t.Fatalf("realm b shares realm a's key (err %v)", err)
	}
}

// failingStorage fails the operation named in fail.
type failingStorage struct {
	certmagic.Storage
	fail string
}

var errStorageDown = errors.New("storage down")

func (s *failingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if s.fail == "load" {
		return nil, errStorageDown
	}
	return s.Storage.Load(ctx, key)
}

func (s *failingStorage) Lock(ctx context.Context, name string) error {
	if s.fail == "lock" {
		return errStorageDown
	}
	return s.Storage.Lock(ctx, name)
}

func (s *failingStorage) Store(ctx context.Context, key string, value []byte) error {
	if s.fail == "store" {
		return errStorageDown
	}
	return s.Storage.Store(ctx, key, value)
}

func (s *failingStorage) Unlock(ctx context.Context, name string) error {
	err := s.Storage.Unlock(ctx, name)
	if s.fail == "unlock" {
		return errStorageDown
	}
	return err
}

// TestKeysGeneratedStorageErrors: a storage failure fails provisioning
// (no key is made up that other instances would not know).
func TestKeysGeneratedStorageErrors(t *testing.T) {
	for _, op := range []string{"load", "lock", "store", "unlock"} {
		t.Run(op, func(t *testing.T) {
			storage := &failingStorage{Storage: &certmagic.FileStorage{Path: t.TempDir()}, fail: op}
			ta := &TokenAuth{Realm: "default", logger: zap.NewNop()}
			_, err := ta.buildKeyRing(context.Background(), storage)
			if !errors.Is(err, errStorageDown) {
				t.Fatalf("error %v, want the storage's", err)
			}
		})
	}
	t.Run("corrupt stored key", func(t *testing.T) {
		storage := &certmagic.FileStorage{Path: t.TempDir()}
		if err := storage.Store(context.Background(), generatedKeyPath("default"), []byte("not a key")); err != nil {
			t.Fatal(err)
		}
		ta := &TokenAuth{Realm: "default", logger: zap.NewNop()}
		_, err := ta.buildKeyRing(context.Background(), storage)
		if err == nil || !strings.Contains(err.Error(), "token_auth/default/signing_key.pem") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestKeysBuildKeyRingLogs: the generated key's creation and the kids are
// logged; a verify_key kid that is not the key's derived id is warned about.
func TestKeysBuildKeyRingLogs(t *testing.T) {
	ed, _, _ := testKeys(t)
	core, logs := observer.New(zapcore.InfoLevel)
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	edKey, _ := loadKey(KeyConfig{Algorithm: "ed25519", Key: pkcs8PEM(t, ed)}, true)
	ta := &TokenAuth{Realm: "default", logger: zap.New(core), VerifyKeys: []KeyConfig{
		{KID: edKey.kid, Algorithm: "ed25519", Key: pkixPEM(t, ed.Public())},
		{KID: "typo", Algorithm: "hs256", Key: testSecret},
	}}
	ring, err := ta.buildKeyRing(context.Background(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if ring.signer.method.Alg() != "EdDSA" || ring.signer.sign == nil {
		t.Fatalf("generated signer %s", ring.signer.method.Alg())
	}
	if n := logs.FilterMessage("generated the realm's Ed25519 signing key").Len(); n != 1 {
		t.Fatalf("%d creation logs", n)
	}
	warn := logs.FilterMessageSnippet("verify_key kid differs").All()
	if len(warn) != 1 || warn[0].ContextMap()["kid"] != "typo" {
		t.Fatalf("warnings %v", warn)
	}
	loaded := logs.FilterMessage("signing keys loaded").All()
	if len(loaded) != 1 || loaded[0].ContextMap()["signing_kid"] != ring.signer.kid {
		t.Fatalf("loaded logs %v", loaded)
	}
	// a second provisioning reuses the stored key
	ring2, err := ta.buildKeyRing(context.Background(), storage)
	if err != nil || ring2.signer.kid != ring.signer.kid {
		t.Fatalf("second provisioning: kid %s vs %s, %v", ring2.signer.kid, ring.signer.kid, err)
	}
	// a configured signing key wins over the stored one
	ta.SigningKey = &KeyConfig{Algorithm: "hs256", Key: testSecret + "x"}
	ta.VerifyKeys = nil
	ring3, err := ta.buildKeyRing(context.Background(), storage)
	if err != nil || ring3.signer.method.Alg() != "HS256" {
		t.Fatalf("configured key not used: %v", err)
	}
	ta.SigningKey = &KeyConfig{Algorithm: "hs256", Key: "short"}
	if _, err := ta.buildKeyRing(context.Background(), storage); err == nil || !strings.Contains(err.Error(), "signing_key") {
		t.Fatalf("bad signing key: %v", err)
	}
}
