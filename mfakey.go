package tokenauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// The key that encrypts TOTP secrets at rest: the operator's
// (encryption_key), or one generated once per realm and kept in Caddy's
// storage beside the generated signing key, created under the same
// storage lock (keys_generated.go), so instances sharing the storage
// share it.

// encryptionKeySize is an AES-256 key.
const encryptionKeySize = 32

// totpKeyPath is where a realm's generated TOTP encryption key is kept.
func totpKeyPath(realm string) string {
	return path.Join(path.Dir(generatedKeyPath(realm)), "totp_key")
}

// encryptionKey returns the configured key, or the realm's generated one.
func (c *TOTPConfig) encryptionKey(ctx caddy.Context, realm string, logger *zap.Logger) ([]byte, error) {
	if c.EncryptionKey != "" {
		return decodeEncryptionKey(caddy.NewReplacer().ReplaceKnown(c.EncryptionKey, ""))
	}
	return loadOrCreateTOTPKey(ctx, ctx.Storage(), realm, logger)
}

// decodeEncryptionKey reads a base64 key of encryptionKeySize bytes.
func decodeEncryptionKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("encryption_key is not base64: %w", err)
	}
	if len(key) != encryptionKeySize {
		return nil, fmt.Errorf("encryption_key must be %d bytes (openssl rand -base64 32), got %d", encryptionKeySize, len(key))
	}
	return key, nil
}

// loadOrCreateTOTPKey returns the realm's generated TOTP key from storage,
// generating it when there is none.
func loadOrCreateTOTPKey(ctx context.Context, storage certmagic.Storage, realm string, logger *zap.Logger) ([]byte, error) {
	return loadOrCreateSecret(ctx, storage, realm, totpKeyPath(realm), "TOTP encryption key", encryptionKeySize, decodeEncryptionKey, logger)
}

// sealer encrypts small secrets with AES-256-GCM, a random nonce each.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal returns nonce || ciphertext of plain, bound to aad.
func (s *sealer) seal(plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, aad), nil
}

var errSealedBroken = errors.New("sealed value too short")

// open reverses seal; a wrong key, aad or a changed byte is an error.
func (s *sealer) open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errSealedBroken
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], aad)
}
