package tokenauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// The process-wide caches of key material: HMAC states per HS256 secret
// (so that a verification allocates none) and parsed PEM keys (so that a
// reload, or several handlers naming one key file, do not parse and, for
// RSA, validate the same key again). Both are caddy.UsagePools: each key a
// handler loads holds one reference (jwtKey.release), given back when the
// handler is cleaned up (keyRing.release), so an entry lives exactly as
// long as some provisioned handler uses its secret or key. A reload
// provisions the new config before cleaning up the old one, so a key both
// configs use is never parsed twice; a secret or key no config uses any
// more leaves memory with the last handler that had it.

// hmacPools holds an hmacStates per HS256 secret, by the secret's SHA-256.
var hmacPools = caddy.NewUsagePool()

// hmacStates is a pool of HMAC-SHA256 states (*hmacState, fastverify.go)
// under one secret.
type hmacStates struct{ sync.Pool }

func (*hmacStates) Destruct() error { return nil }

// acquireHMACStates returns the states of secret and the function that
// gives the reference back.
func acquireHMACStates(secret []byte) (*sync.Pool, func()) {
	id := hmacPoolID(secret)
	key := append([]byte(nil), secret...)
	val, _ := hmacPools.LoadOrStore(id, &hmacStates{Pool: sync.Pool{New: func() any { return &hmacState{mac: hmac.New(sha256.New, key)} }}})
	return &val.(*hmacStates).Pool, func() { _, _ = hmacPools.Delete(id) }
}

func hmacPoolID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return string(sum[:])
}

// parsedKeys holds parsed PEM keys by algorithm and the PEM's SHA-256.
// Files are still read on every provisioning: a changed file is another
// entry.
var parsedKeys = caddy.NewUsagePool()

// parsedKey is a pooled parsed key; callers use copies (copyKey).
type parsedKey struct{ key *jwtKey }

func (parsedKey) Destruct() error { return nil }

func keyCacheID(alg string, pemData []byte) string {
	sum := sha256.Sum256(pemData)
	return alg + "\x00" + string(sum[:])
}

// acquireParsedKey returns the parsed key of pemData for alg, parsing it
// with parse unless a handler already holds it, and the function that
// gives the reference back.
func acquireParsedKey(alg string, pemData []byte, parse func() (*jwtKey, error)) (*jwtKey, func(), error) {
	id := keyCacheID(alg, pemData)
	val, _, err := parsedKeys.LoadOrNew(id, func() (caddy.Destructor, error) {
		k, err := parse()
		if err != nil {
			return nil, err
		}
		return parsedKey{key: k}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return val.(parsedKey).key, func() { _, _ = parsedKeys.Delete(id) }, nil
}

// release gives back the cache references of every key of the ring; the
// ring must not be used afterwards.
func (ring *keyRing) release() {
	for _, k := range ring.ordered {
		k.releaseCached()
	}
}

// releaseCached gives back the key's cache reference, once.
func (k *jwtKey) releaseCached() {
	if k.release != nil {
		k.release()
		k.release = nil
	}
}
