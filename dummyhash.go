package tokenauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

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
	parts := strings.Split(hash, "$")
	if len(parts) == 6 && parts[1] == "argon2id" {
		salt, err1 := base64.RawStdEncoding.Strict().DecodeString(parts[4])
		key, err2 := base64.RawStdEncoding.Strict().DecodeString(parts[5])
		if err1 == nil && err2 == nil {
			return fmt.Sprintf("argon2id:%s,salt=%d,key=%d", parts[3], len(salt), len(key))
		}
	}
	return ""
}

// dummyHashFor returns the comparer and dummy hash matching the most common
// cost among users (caddyauth's bcrypt fake hash when there are none).
func dummyHashFor(users []User) (passwordComparer, []byte) {
	counts := make(map[string]int)
	best, bestHash := "", ""
	for _, u := range users {
		c := hashCost(u.Password)
		if c == "" {
			continue
		}
		counts[c]++
		if counts[c] > counts[best] {
			best, bestHash = c, u.Password
		}
	}
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

// makeDummyHash hashes a random password with the same algorithm and
// parameters as like.
func makeDummyHash(like string) ([]byte, error) {
	password := []byte(randomID())
	if cost, err := bcrypt.Cost([]byte(like)); err == nil {
		return bcrypt.GenerateFromPassword(password, cost)
	}
	parts := strings.Split(like, "$")
	if len(parts) != 6 {
		return nil, fmt.Errorf("not an argon2id hash")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return nil, fmt.Errorf("argon2id parameters: %v", err)
	}
	oldSalt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil {
		return nil, err
	}
	oldKey, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil {
		return nil, err
	}
	salt := make([]byte, len(oldSalt))
	_, _ = rand.Read(salt)
	key := argon2.IDKey(password, salt, t, m, p, uint32(len(oldKey)))
	return []byte(fmt.Sprintf("%s$%s$%s$%s$%s", "$argon2id", parts[2], parts[3],
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))), nil
}
