package tokenauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// generatedKeyLockTimeout bounds the wait for another instance that holds
// the key's storage lock.
const generatedKeyLockTimeout = 2 * time.Minute

// loadKeys builds the handler's key ring: the configured signing key, or
// else the realm's generated Ed25519 key from Caddy's storage, plus the
// verify keys. It logs the kids, so operators can write verify_key lines.
func (ta *TokenAuth) loadKeys(ctx caddy.Context) (*keyRing, error) {
	var storage certmagic.Storage
	if ta.SigningKey == nil {
		// only a generated key needs storage (ctx.Storage() needs a running config)
		storage = ctx.Storage()
	}
	return ta.buildKeyRing(ctx, storage)
}

func (ta *TokenAuth) buildKeyRing(ctx context.Context, storage certmagic.Storage) (*keyRing, error) {
	var signer *jwtKey
	if ta.SigningKey != nil {
		var err error
		signer, err = loadKey(*ta.SigningKey, true)
		if err != nil {
			return nil, fmt.Errorf("signing_key: %w", err)
		}
	} else {
		pemData, created, err := loadOrCreateGeneratedKey(ctx, storage, ta.Realm)
		if err != nil {
			return nil, fmt.Errorf("default signing key of realm %q in storage %v: %w", ta.Realm, storage, err)
		}
		signer, err = asymmetricKeyFromPEM("ed25519", pemData, true)
		if err != nil {
			return nil, fmt.Errorf("default signing key %s in storage %v: %w", generatedKeyPath(ta.Realm), storage, err)
		}
		if created {
			ta.logger.Info("generated the realm's Ed25519 signing key",
				zap.String("realm", ta.Realm), zap.String("storage_key", generatedKeyPath(ta.Realm)), zap.String("kid", signer.kid))
		}
	}
	ring, err := newKeyRingFrom(signer, ta.VerifyKeys)
	if err != nil {
		return nil, err
	}
	verifyKIDs := make([]string, 0, len(ring.ordered)-1)
	for _, k := range ring.ordered[1:] {
		verifyKIDs = append(verifyKIDs, k.kid)
		if k.kid != k.derivedKID {
			ta.logger.Warn("verify_key kid differs from the id this plugin gives that key; tokens it signed with the key carry the derived kid",
				zap.String("realm", ta.Realm), zap.String("kid", k.kid), zap.String("derived_kid", k.derivedKID))
		}
	}
	ta.logger.Info("signing keys loaded", zap.String("realm", ta.Realm),
		zap.String("signing_kid", signer.kid), zap.String("signing_alg", signer.method.Alg()),
		zap.Strings("verify_kids", verifyKIDs))
	return ring, nil
}

// safeRealm matches realm names usable as a storage path segment as is.
var safeRealm = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// generatedKeyPath is where a realm's generated signing key is kept in
// Caddy's storage. Realm names that are not plain path segments are
// hex-encoded behind a "~", which no plain name starts with.
func generatedKeyPath(realm string) string {
	seg := realm
	if !safeRealm.MatchString(realm) {
		seg = "~" + hex.EncodeToString([]byte(realm))
	}
	return path.Join("token_auth", seg, "signing_key.pem")
}

// afterKeyMissing is a test hook, called when the key was not found in
// storage, before the lock is taken.
var afterKeyMissing = func() {}

// loadOrCreateGeneratedKey returns the realm's generated key from storage,
// generating and storing it when there is none.
func loadOrCreateGeneratedKey(ctx context.Context, storage certmagic.Storage, realm string) (pemData []byte, created bool, err error) {
	return loadOrCreateInStorage(ctx, storage, generatedKeyPath(realm), generateEd25519PEM)
}

// loadOrCreateInStorage returns the value under key in storage, making it
// with generate and storing it when there is none. Creation happens under
// the storage's lock and re-checks for a value first, so instances sharing
// the storage that start together end up with one value. The lock is one
// per realm directory, for every generated key of the realm (its name
// predates keys other than the signing key).
func loadOrCreateInStorage(ctx context.Context, storage certmagic.Storage, key string, generate func() ([]byte, error)) (value []byte, created bool, err error) {
	value, err = storage.Load(ctx, key)
	if err == nil {
		return value, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("loading %s: %w", key, err)
	}
	afterKeyMissing()

	lockCtx, cancel := context.WithTimeout(ctx, generatedKeyLockTimeout)
	defer cancel()
	lockName := "token_auth_signing_key_" + path.Dir(key)
	if err := storage.Lock(lockCtx, lockName); err != nil {
		return nil, false, fmt.Errorf("locking storage to create %s: %w", key, err)
	}
	defer func() {
		if uerr := storage.Unlock(context.WithoutCancel(ctx), lockName); uerr != nil && err == nil {
			err = fmt.Errorf("unlocking storage after creating %s: %w", key, uerr)
		}
	}()

	value, err = storage.Load(ctx, key)
	if err == nil {
		return value, false, nil // another instance made it meanwhile
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("loading %s: %w", key, err)
	}
	value, err = generate()
	if err != nil {
		return nil, false, err
	}
	if err := storage.Store(ctx, key, value); err != nil {
		return nil, false, fmt.Errorf("storing %s: %w", key, err)
	}
	return value, true, nil
}

// loadOrCreateSecret returns a realm's generated secret of size random
// bytes, kept base64 under storageKey, generating it when there is none
// (loadOrCreateInStorage); decode reads the stored value. what names the
// secret in logs and errors.
func loadOrCreateSecret(ctx context.Context, storage certmagic.Storage, realm, storageKey, what string, size int, decode func(string) ([]byte, error), logger *zap.Logger) ([]byte, error) {
	stored, created, err := loadOrCreateInStorage(ctx, storage, storageKey, func() ([]byte, error) {
		key := make([]byte, size)
		_, _ = rand.Read(key)
		return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s of realm %q in storage %v: %w", what, realm, storage, err)
	}
	if created {
		logger.Info("generated the realm's "+what, zap.String("realm", realm), zap.String("storage_key", storageKey))
	}
	key, err := decode(string(stored))
	if err != nil {
		return nil, fmt.Errorf("%s %s in storage %v: %w", what, storageKey, storage, err)
	}
	return key, nil
}

// generateEd25519PEM makes a new Ed25519 key as PKCS#8 PEM.
func generateEd25519PEM() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
