package tokenauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"go.uber.org/zap"
)

// TOTP (RFC 6238) as a second factor, with github.com/pquerna/otp: it
// makes the secrets and the otpauth:// key URI authenticator apps read,
// computes the codes, and draws the URI as a QR code (with
// github.com/boombuler/barcode, its own dependency). What is ours: the
// secret encrypted at rest, a code accepted once, and recovery codes.

// TOTPConfig configures authenticator app codes (`mfa totp`).
type TOTPConfig struct {
	// Issuer names the site in the authenticator app (the otpauth://
	// URI's issuer). Default: the site's host name, as the browser sent it
	// when the person set the app up.
	Issuer string `json:"issuer,omitempty"`

	// EncryptionKey encrypts the users' TOTP secrets in the store
	// (AES-256-GCM): 32 bytes, base64-encoded (`openssl rand -base64 32`),
	// e.g. {env.TOKEN_AUTH_TOTP_KEY}. Every instance sharing the store needs
	// the same key, and changing it makes every enrolment unusable (reset
	// them with `caddy token-auth-users mfa reset`). Default: a key
	// generated once and kept in Caddy's storage
	// (`token_auth/<realm>/totp_key`), like the default signing key, so it
	// is shared by every instance that shares that storage.
	EncryptionKey string `json:"encryption_key,omitempty"`
}

// The TOTP parameters every authenticator app takes (RFC 6238's defaults),
// with one step of clock skew either way.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

const (
	totpPeriod = 30 * time.Second
	// totpUsedTTL keeps a used step's mark until no clock skew makes the
	// step acceptable again.
	totpUsedTTL = 4 * totpPeriod
	// totpSetupTTL is how long a started set-up waits for its confirming code.
	totpSetupTTL = 10 * time.Minute
	// recoveryCodeCount recovery codes are made at set-up, each usable once.
	recoveryCodeCount = 10
	// recoveryUsedTTL holds the claim of a used recovery code while its
	// record is deleted.
	recoveryUsedTTL = time.Hour
)

// KV names of the TOTP records: kind totpKind, for owner the user id, the
// enrolment under id totpSecretID and a recovery code under
// recoveryIDPrefix + its hash.
const (
	totpKind         = "totp"
	totpSecretID     = "secret"
	recoveryIDPrefix = "recovery:"
)

// totpService holds a realm's TOTP key and settings after Provision.
type totpService struct {
	issuer string
	seal   *sealer // the secrets' at-rest encryption (mfakey.go)
	// recoveryKey keys the recovery codes' hashes (HMAC-SHA256), so that a
	// copy of the store alone cannot be searched for them.
	recoveryKey []byte
}

// provision resolves the config: the encryption key from the config or
// from Caddy's storage.
func (c *TOTPConfig) provision(ctx caddy.Context, realm string, logger *zap.Logger) (*totpService, error) {
	key, err := c.encryptionKey(ctx, realm, logger)
	if err != nil {
		return nil, err
	}
	return newTOTPService(c.Issuer, key)
}

func newTOTPService(issuer string, key []byte) (*totpService, error) {
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("token_auth recovery codes"))
	return &totpService{issuer: issuer, seal: s, recoveryKey: mac.Sum(nil)}, nil
}

// enrolment is the stored record of a confirmed TOTP set-up.
type enrolment struct {
	Sealed  []byte    `json:"sealed"` // the secret, encrypted (sealer)
	Created time.Time `json:"created"`
}

// secretAAD binds a sealed secret to its user, so that a secret copied
// onto another user's record does not open.
func secretAAD(user string) []byte { return []byte("totp secret\x00" + user) }

// enrolled says whether user has confirmed a TOTP set-up.
func (t *totpService) enrolled(ctx context.Context, kv KV, user string) (bool, error) {
	_, found, err := t.enrolment(ctx, kv, user)
	return found, err
}

// enrolment returns user's confirmed set-up and its record.
func (t *totpService) enrolment(ctx context.Context, kv KV, user string) (enrolment, bool, error) {
	recs, err := kv.Records(ctx, totpKind, user)
	if err != nil {
		return enrolment{}, false, err
	}
	raw, found := recs[totpSecretID]
	if !found {
		return enrolment{}, false, nil
	}
	var e enrolment
	if err := json.Unmarshal(raw, &e); err != nil {
		return enrolment{}, false, fmt.Errorf("TOTP record of %q: %w", user, err)
	}
	return e, true, nil
}

// setup starts a set-up for user: a new secret, kept (encrypted) for
// totpSetupTTL until a code confirms it. host is the default issuer.
func (t *totpService) setup(ctx context.Context, kv KV, user, host string) (*otp.Key, error) {
	issuer := t.issuer
	if issuer == "" {
		issuer = host
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: user,
		Period: uint(totpOpts.Period), Digits: totpOpts.Digits, Algorithm: totpOpts.Algorithm})
	if err != nil {
		return nil, err
	}
	sealed, err := t.seal.seal([]byte(key.Secret()), secretAAD(user))
	if err != nil {
		return nil, err
	}
	if err := kv.PutTemp(ctx, totpPendingKey(user), sealed, totpSetupTTL); err != nil {
		return nil, err
	}
	return key, nil
}

func totpPendingKey(user string) string { return "totp:pending:" + user }

// confirm ends a set-up with a current code: the secret becomes the
// user's enrolment and the answer is the recovery codes (shown once,
// kept hashed). result is codeAccepted when it worked.
func (t *totpService) confirm(ctx context.Context, kv KV, user, code string, now time.Time) (codes []string, result codeResult, err error) {
	sealed, found, err := kv.GetTemp(ctx, totpPendingKey(user))
	if err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, codeNoSetup, nil
	}
	secret, err := t.seal.open(sealed, secretAAD(user))
	if err != nil {
		return nil, 0, fmt.Errorf("opening a pending TOTP secret: %w", err)
	}
	if result, err = acceptTOTPCode(ctx, kv, user, string(secret), code, now); err != nil || result != codeAccepted {
		return nil, result, err
	}
	if _, found, err := kv.TakeTemp(ctx, totpPendingKey(user)); err != nil || !found {
		return nil, codeNoSetup, err // confirmed by a concurrent request
	}
	record, err := json.Marshal(enrolment{Sealed: sealed, Created: now.UTC()})
	if err != nil {
		return nil, 0, err
	}
	// replace any earlier enrolment and its recovery codes
	if err := kv.DeleteRecords(ctx, totpKind, user); err != nil {
		return nil, 0, err
	}
	if codes, err = t.newRecoveryCodes(ctx, kv, user, now); err != nil {
		return nil, 0, err
	}
	if err := kv.PutRecord(ctx, totpKind, user, totpSecretID, record); err != nil {
		return nil, 0, err
	}
	return codes, codeAccepted, nil
}

// remove deletes user's enrolment and recovery codes.
func (t *totpService) remove(ctx context.Context, kv KV, user string) error {
	if err := kv.DeleteRecords(ctx, totpKind, user); err != nil {
		return err
	}
	_, _, err := kv.TakeTemp(ctx, totpPendingKey(user))
	return err
}

// codeResult is the outcome of checking a code.
type codeResult int

const (
	codeAccepted codeResult = iota + 1
	codeWrong               // not a current code (or not a code at all)
	codeReplayed            // right, but already used
	codeNoSetup             // the user has no TOTP (or no set-up in progress)
)

// String is the result as a metric label and log field.
func (r codeResult) String() string {
	switch r {
	case codeAccepted:
		return "success"
	case codeWrong:
		return "failure"
	case codeReplayed:
		return "replayed"
	case codeNoSetup:
		return "not_enrolled"
	}
	return "unknown"
}

// checkUserCode checks a code against user's enrolment.
func (t *totpService) checkUserCode(ctx context.Context, kv KV, user, code string, now time.Time) (codeResult, error) {
	e, found, err := t.enrolment(ctx, kv, user)
	if err != nil {
		return 0, err
	}
	if !found {
		return codeNoSetup, nil
	}
	secret, err := t.seal.open(e.Sealed, secretAAD(user))
	if err != nil {
		return 0, fmt.Errorf("opening the TOTP secret of %q (was the encryption key changed?): %w", user, err)
	}
	return acceptTOTPCode(ctx, kv, user, string(secret), code, now)
}

// acceptTOTPCode checks code against the steps of now and one either side
// (clock skew), and accepts it once: the matching step of this user is
// claimed in the store, so the same code is refused on every instance
// until it is no longer current anyway.
func acceptTOTPCode(ctx context.Context, kv KV, user, secret, code string, now time.Time) (codeResult, error) {
	code = strings.TrimSpace(code)
	if len(code) != totpOpts.Digits.Length() {
		return codeWrong, nil
	}
	step := now.Unix() / int64(totpOpts.Period)
	for _, offset := range []int64{0, -1, 1} {
		at := time.Unix((step+offset)*int64(totpOpts.Period), 0)
		want, err := totp.GenerateCodeCustom(secret, at, totpOpts)
		if err != nil {
			return 0, fmt.Errorf("computing a TOTP code: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) != 1 {
			continue
		}
		first, err := kv.ClaimTemp(ctx, "totp:used:"+user+":"+strconv.FormatInt(step+offset, 10), totpUsedTTL)
		if err != nil {
			return 0, err
		}
		if !first {
			return codeReplayed, nil
		}
		return codeAccepted, nil
	}
	return codeWrong, nil
}

// recoveryEncoding writes recovery codes in lower case base32, which has
// no 0/O or 1/l to confuse.
var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newRecoveryCodes makes user's recovery codes and stores their hashes.
func (t *totpService) newRecoveryCodes(ctx context.Context, kv KV, user string, now time.Time) ([]string, error) {
	codes := make([]string, recoveryCodeCount)
	created, _ := json.Marshal(map[string]time.Time{"created": now.UTC()})
	for i := range codes {
		b := make([]byte, 10) // 80 bits
		_, _ = rand.Read(b)
		s := strings.ToLower(recoveryEncoding.EncodeToString(b)) // 16 characters
		codes[i] = s[:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:]
		if err := kv.PutRecord(ctx, totpKind, user, recoveryIDPrefix+t.recoveryHash(user, codes[i]), created); err != nil {
			return nil, err
		}
	}
	return codes, nil
}

// recoveryHash is the stored form of a recovery code, whatever its case,
// dashes and spaces.
func (t *totpService) recoveryHash(user, code string) string {
	normal := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(code))
	mac := hmac.New(sha256.New, t.recoveryKey)
	mac.Write([]byte(user + "\x00" + normal))
	return hex.EncodeToString(mac.Sum(nil))
}

// useRecoveryCode accepts one of user's recovery codes, once: the code's
// claim in the store decides between concurrent uses, then its record goes.
func (t *totpService) useRecoveryCode(ctx context.Context, kv KV, user, code string) (codeResult, error) {
	recs, err := kv.Records(ctx, totpKind, user)
	if err != nil {
		return 0, err
	}
	if _, found := recs[totpSecretID]; !found {
		return codeNoSetup, nil
	}
	id := recoveryIDPrefix + t.recoveryHash(user, code)
	if _, found := recs[id]; !found {
		return codeWrong, nil
	}
	first, err := kv.ClaimTemp(ctx, "totp:recovery-used:"+user+":"+id, recoveryUsedTTL)
	if err != nil {
		return 0, err
	}
	if !first {
		return codeReplayed, nil
	}
	return codeAccepted, kv.DeleteRecord(ctx, totpKind, user, id)
}

// recoveryCodesLeft counts user's unused recovery codes.
func recoveryCodesLeft(ctx context.Context, kv KV, user string) (int, error) {
	recs, err := kv.Records(ctx, totpKind, user)
	if err != nil {
		return 0, err
	}
	n := 0
	for id := range recs {
		if strings.HasPrefix(id, recoveryIDPrefix) {
			n++
		}
	}
	return n, nil
}

// qrDataURL draws the key URI as a PNG QR code, as a data: URL for an
// <img> (the pages' CSP allows img-src data:).
func qrDataURL(key *otp.Key) (string, error) {
	img, err := key.Image(240, 240)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
