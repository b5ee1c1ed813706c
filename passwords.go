package tokenauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Passwords: the hash comparers (caddyauth's, picked by the hash's
// prefix), hashing a new password as `caddy hash-password` does, the dummy
// hash an unknown login is checked against, and the one reader and writer
// of argon2id hashes in the PHC string form Caddy prints.

// passwordComparer is caddyauth's Comparer plus its fake hash, so an
// unknown user costs the same hash verification as a known one.
type passwordComparer interface {
	caddyauth.Comparer
	caddyauth.Hasher
}

// comparerFor picks the hash algorithm from the hash's own prefix.
func comparerFor(hash string) (passwordComparer, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return caddyauth.BcryptHash{}, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		if _, err := parseArgon2id(hash); err != nil {
			return nil, fmt.Errorf("malformed argon2id hash: %v", err)
		}
		return caddyauth.Argon2idHash{}, nil
	default:
		return nil, errors.New("password must be a bcrypt or argon2id hash as printed by `caddy hash-password`")
	}
}

// hashPassword hashes like `caddy hash-password` (caddyauth's bcrypt
// hasher cannot be given a cost from outside its package, nor its argon2id
// hasher parameters, so both are computed here with caddyauth's defaults and
// encoding). The result is checked with caddyauth's own comparer (comparerFor)
// before it is written.
func hashPassword(pw []byte, algorithm string, bcryptCost int) (string, error) {
	var hash string
	switch algorithm {
	case "bcrypt":
		if bcryptCost < bcrypt.MinCost || bcryptCost > bcrypt.MaxCost {
			return "", fmt.Errorf("--bcrypt-cost must be between %d and %d", bcrypt.MinCost, bcrypt.MaxCost)
		}
		h, err := bcrypt.GenerateFromPassword(pw, bcryptCost)
		if err != nil {
			return "", err
		}
		hash = string(h)
	case "argon2id":
		h, err := caddyArgon2id.rehash(pw)
		if err != nil {
			return "", err
		}
		hash = h.String()
	default:
		return "", fmt.Errorf("unknown --algorithm %q (want argon2id or bcrypt)", algorithm)
	}
	cmp, err := comparerFor(hash)
	if err != nil {
		return "", err
	}
	if ok, err := cmp.Compare([]byte(hash), pw); err != nil || !ok {
		return "", fmt.Errorf("the new %s hash does not verify (%v)", algorithm, err)
	}
	return hash, nil
}

// An unknown login is checked against a dummy hash so that it costs what a
// wrong password costs. caddyauth's FakeHash is bcrypt cost 14 or argon2id
// with Caddy's default parameters; a realm whose users were hashed with
// other costs would answer unknown users faster (or slower) than known
// ones, telling which accounts exist. So the dummy is made with the cost
// and parameters most of the realm's users have, once per distinct setting.

// dummyHashes caches dummy hashes by hashCost, so a users-file reload does
// not hash again.
var dummyHashes sync.Map // hashCost -> []byte

// hashCost identifies the algorithm and work factor of a hash: "bcrypt:12",
// "argon2id:m=47104,t=1,p=1,salt=16,key=32".
func hashCost(hash string) string {
	if c, err := bcrypt.Cost([]byte(hash)); err == nil {
		return "bcrypt:" + strconv.Itoa(c)
	}
	if h, err := parseArgon2id(hash); err == nil {
		return fmt.Sprintf("argon2id:m=%d,t=%d,p=%d,salt=%d,key=%d", h.memory, h.time, h.threads, len(h.salt), len(h.key))
	}
	return ""
}

// dummyHashFor returns the comparer and dummy hash matching the most common
// cost among users (caddyauth's bcrypt fake hash when there are none).
func dummyHashFor(users []User) (passwordComparer, []byte) {
	m := costMixOf(users)
	best, bestHash := m.common, m.commonHash
	if best == "" {
		return caddyauth.BcryptHash{}, caddyauth.BcryptHash{}.FakeHash()
	}
	comparer, _ := comparerFor(bestHash)
	if fake := comparer.FakeHash(); hashCost(string(fake)) == best {
		return comparer, fake
	}
	if cached, ok := dummyHashes.Load(best); ok {
		return comparer, cached.([]byte)
	}
	fake, err := makeDummyHash(bestHash)
	if err != nil {
		// cannot happen for a hash that passed validation; the fake hash
		// still hides which accounts exist, if less exactly
		return comparer, comparer.FakeHash()
	}
	dummyHashes.Store(best, fake)
	return comparer, fake
}

// A dummy of the most common cost hides unknown users only from logins of
// users of that cost: a user hashed with another algorithm or cost answers
// measurably faster or slower than an unknown one (seen: unknown 2 ms, a
// bcrypt cost-12 user 286 ms in a realm of cost-5 users), which tells an
// attacker the account exists. That cannot be hidden at login time without
// doing the slowest hash for everyone, so it is said at load, once per
// distinct mix, with how to fix it.

// maxNamedUsers bounds the user ids a mixed-cost warning names.
const maxNamedUsers = 5

// costMix is how a realm's password hashes are spread over algorithms and
// costs; a mix has more than one.
type costMix struct {
	counts     map[string]int // hashCost -> users
	common     string         // the most common: the dummy hash's
	commonHash string         // a hash of that cost
	others     []string       // ids of the users of the other costs, sorted
}

// costMixOf reads the mix of the users' hashes (users without a password
// are passkey-only and never hashed).
func costMixOf(users []User) costMix {
	m := costMix{counts: make(map[string]int)}
	byCost := make(map[string][]string)
	for _, u := range users {
		c := hashCost(u.Password)
		if c == "" {
			continue
		}
		m.counts[c]++
		byCost[c] = append(byCost[c], u.ID)
		if m.counts[c] > m.counts[m.common] {
			m.common, m.commonHash = c, u.Password
		}
	}
	for c, ids := range byCost {
		if c != m.common {
			m.others = append(m.others, ids...)
		}
	}
	slices.Sort(m.others)
	return m
}

func (m costMix) mixed() bool { return len(m.counts) > 1 }

// signature identifies a mix, to warn once per distinct one.
func (m costMix) signature() string {
	if !m.mixed() {
		return ""
	}
	parts := make([]string, 0, len(m.counts))
	for c, n := range m.counts {
		parts = append(parts, c+"="+strconv.Itoa(n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ") + " | " + strings.Join(m.others, ",")
}

// warnedCostMixes is the last mix warned about, per realm, so that a
// reload (of the config or the users file) that sees the same mix, or a
// second directive of the realm, says nothing new.
var warnedCostMixes sync.Map // realm -> signature

// warnMixedCosts logs, once per realm and distinct mix, that the realm's
// users have hashes of different algorithms or costs, what that reveals
// and how to fix it.
func warnMixedCosts(logger *zap.Logger, realm string, users []User) {
	m := costMixOf(users)
	sig := m.signature()
	if prev, _ := warnedCostMixes.Swap(realm, sig); prev == sig || sig == "" {
		return
	}
	named := m.others
	if len(named) > maxNamedUsers {
		named = named[:maxNamedUsers]
	}
	logger.Warn("users have password hashes of different algorithms or costs: by timing a login, anyone can tell "+
		"which accounts exist and which have another cost (an unknown user is checked against a dummy hash of the "+
		"most common cost); give those users a hash of the common cost: `caddy token-auth-users update <id> --password`, "+
		"or rehash them all alike",
		zap.String("realm", realm), zap.Any("hash_costs", m.counts), zap.String("common_cost", m.common),
		zap.Int("other_cost_users", len(m.others)), zap.Strings("other_cost_user_ids", named))
}

// makeDummyHash hashes a random password with the same algorithm and
// parameters as like.
func makeDummyHash(like string) ([]byte, error) {
	password := []byte(randomID())
	if cost, err := bcrypt.Cost([]byte(like)); err == nil {
		return bcrypt.GenerateFromPassword(password, cost)
	}
	h, err := parseArgon2id(like)
	if err != nil {
		return nil, err
	}
	h, err = h.rehash(password)
	if err != nil {
		return nil, err
	}
	return []byte(h.String()), nil
}

// argon2idParams is an argon2id hash as `caddy hash-password` prints it:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<key>, salt and key
// in unpadded standard base64. caddyauth reads and writes the same form
// but exports none of the parameters, which the CLI and the dummy hash need.
type argon2idParams struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// caddyArgon2id has caddyauth's default parameters (t=1, m=46 MiB, p=1,
// a 16-byte salt, a 32-byte key), which `caddy hash-password` uses.
var caddyArgon2id = argon2idParams{memory: 46 * 1024, time: 1, threads: 1, salt: make([]byte, 16), key: make([]byte, 32)}

// parseArgon2id reads an argon2id hash, accepting what caddyauth's
// comparer (caddyauth.DecodeHash) accepts.
func parseArgon2id(hash string) (argon2idParams, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return argon2idParams{}, errors.New("invalid hash format")
	}
	if v, err := strconv.Atoi(strings.TrimPrefix(parts[2], "v=")); err != nil || v != argon2.Version {
		return argon2idParams{}, fmt.Errorf("incompatible version %q", parts[2])
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return argon2idParams{}, errors.New("invalid parameters")
	}
	m, errM := strconv.ParseUint(strings.TrimPrefix(params[0], "m="), 10, 32)
	t, errT := strconv.ParseUint(strings.TrimPrefix(params[1], "t="), 10, 32)
	p, errP := strconv.ParseUint(strings.TrimPrefix(params[2], "p="), 10, 8)
	if err := errors.Join(errM, errT, errP); err != nil {
		return argon2idParams{}, fmt.Errorf("invalid parameters: %w", err)
	}
	h := argon2idParams{memory: uint32(m), time: uint32(t), threads: uint8(p)}
	var err error
	if h.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil {
		return argon2idParams{}, fmt.Errorf("decode salt: %w", err)
	}
	if h.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil {
		return argon2idParams{}, fmt.Errorf("decode key: %w", err)
	}
	return h, nil
}

// rehash hashes password with the same parameters, salt and key lengths,
// and a new random salt.
func (h argon2idParams) rehash(password []byte) (argon2idParams, error) {
	out := h
	out.salt = make([]byte, len(h.salt))
	if _, err := rand.Read(out.salt); err != nil {
		return argon2idParams{}, err
	}
	out.key = argon2.IDKey(password, out.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return out, nil
}

// String is the hash in PHC string form.
func (h argon2idParams) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.memory, h.time, h.threads,
		base64.RawStdEncoding.EncodeToString(h.salt), base64.RawStdEncoding.EncodeToString(h.key))
}
