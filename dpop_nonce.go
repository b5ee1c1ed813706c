package tokenauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Server-provided DPoP nonces (RFC 9449 §8, §9), with `dpop ... { nonce }`:
// a proof must carry a nonce this realm handed out recently, which limits
// a proof made ahead of time (by malware that has the key for a while) to
// the nonce's short life. Nonces are stateless so that instances need to
// share nothing but the realm's key: a nonce is a time bucket and its
// HMAC, base64url(bucket || HMAC-SHA256(key, realm || bucket)), and a
// proof may carry the current bucket's or the previous one's. The key is
// generated once per realm in Caddy's storage, beside the signing key
// (keys_default.go), so instances sharing the storage share it.

// nonceKeySize is the HMAC-SHA256 key of nonces.
const nonceKeySize = 32

// errUseNonce: the proof carries no nonce, or one that is forged or too
// old; the answer is `use_dpop_nonce` with a fresh nonce (§8).
var errUseNonce = errors.New("DPoP proof without a current server nonce")

// nonceKeyPath is where a realm's generated nonce key is kept.
func nonceKeyPath(realm string) string {
	return path.Join(path.Dir(generatedKeyPath(realm)), "dpop_nonce_key")
}

// loadOrCreateNonceKey returns the realm's nonce key from storage,
// generating it when there is none.
func loadOrCreateNonceKey(ctx context.Context, storage certmagic.Storage, realm string, logger *zap.Logger) ([]byte, error) {
	return loadOrCreateSecret(ctx, storage, realm, nonceKeyPath(realm), "DPoP nonce key", nonceKeySize, decodeNonceKey, logger)
}

// decodeNonceKey reads a stored nonce key: base64 of nonceKeySize bytes.
func decodeNonceKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(key) != nonceKeySize {
		return nil, fmt.Errorf("not %d bytes of base64", nonceKeySize)
	}
	return key, nil
}

// provisionNonces gives the verifier its nonce source when cfg.Nonce is
// on, with the realm's key from Caddy's storage (ta.testStorage in
// tests, which have no running config).
func (ta *TokenAuth) provisionNonces(ctx caddy.Context, cfg DPoPConfig) error {
	if !cfg.Nonce || cfg.Mode == dpopOff {
		return nil
	}
	storage := ta.testStorage
	if storage == nil {
		storage = ctx.Storage()
	}
	key, err := loadOrCreateNonceKey(ctx, storage, ta.Realm, ta.logger)
	if err != nil {
		return err
	}
	ta.dpop.nonces = &nonceSource{key: key, realm: ta.Realm, bucket: time.Duration(cfg.IATWindow), now: ta.dpop.now}
	return nil
}

// nonceSource makes and checks the nonces of one realm.
type nonceSource struct {
	key    []byte
	realm  string
	bucket time.Duration // a nonce lives one to two buckets
	now    func() time.Time
}

func (s *nonceSource) bucketAt(t time.Time) uint64 { return uint64(t.UnixNano() / int64(s.bucket)) }

func (s *nonceSource) sign(bucket uint64) []byte {
	b := binary.BigEndian.AppendUint64(nil, bucket)
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(s.realm))
	mac.Write(b)
	return mac.Sum(b)
}

// current is the nonce of the current bucket, for the DPoP-Nonce header.
func (s *nonceSource) current() string {
	return base64.RawURLEncoding.EncodeToString(s.sign(s.bucketAt(s.now())))
}

// valid says whether nonce is the current bucket's or the previous one's.
func (s *nonceSource) valid(nonce string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 8+sha256.Size {
		return false
	}
	bucket := binary.BigEndian.Uint64(raw[:8])
	now := s.bucketAt(s.now())
	if bucket != now && bucket+1 != now {
		return false
	}
	return hmac.Equal(raw, s.sign(bucket))
}

// checkNonce refuses a proof without a valid nonce when nonces are on.
func (v *dpopVerifier) checkNonce(nonce string) error {
	if v.nonces == nil || v.nonces.valid(nonce) {
		return nil
	}
	return errUseNonce
}

// offerNonce sets a fresh DPoP-Nonce header on every answer of the
// endpoint, and of guarded requests that use DPoP, so that a client
// always holds a current nonce for its next proof (§8.2).
func (ta *TokenAuth) offerNonce(w http.ResponseWriter, r *http.Request, atEndpoint bool) {
	if !ta.dpop.on() || ta.dpop.nonces == nil {
		return
	}
	if _, viaDPoP := dpopAccessToken(r); atEndpoint || viaDPoP || r.Header.Get("DPoP") != "" {
		w.Header().Set("DPoP-Nonce", ta.dpop.nonces.current())
	}
}

// errDPoPNonce is the endpoint's answer to a proof without a current
// nonce: 400 (RFC 9449 §8), the error code in data.error as in an OAuth
// error body, and in data.reason like the other DPoP refusals.
func errDPoPNonce() *apiError {
	e := newAPIError(http.StatusBadRequest, "DPoP proof needs the server's nonce (DPoP-Nonce header)")
	e.Data = map[string]string{"error": "use_dpop_nonce", "reason": "use_dpop_nonce"}
	return e
}
