package tokenauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
)

// max_concurrent_hashes bounds the password verifications of a realm, not
// of one directive: a site with five token_auth directives of one realm
// hashes at most max_concurrent_hashes passwords at once, as the option
// says, not five times as many. Every directive of the realm must give the
// same value (realmrules.go), so they share one set of slots, kept in
// hashSlotPool. A reload that keeps the value keeps the slots (a login
// hashing across the reload still holds its slot); one that changes it
// gets new slots, and the old config's slots go with it.

// hashSlotPool holds one hashSlots per realm and slot count.
var hashSlotPool = caddy.NewUsagePool()

// realmHashSlots is a pooled hashSlots; nothing to release but memory.
type realmHashSlots struct{ slots hashSlots }

func (realmHashSlots) Destruct() error { return nil }

// hashSlotCount is max_concurrent_hashes with the default filled in.
func hashSlotCount(n int) int {
	if n <= 0 {
		return defaultHashSlots()
	}
	return n
}

func hashSlotKey(realm string, n int) string {
	return realm + "\x00" + strconv.Itoa(hashSlotCount(n))
}

// acquireHashSlots returns the realm's shared slots; every call must be
// paired with releaseHashSlots.
func acquireHashSlots(realm string, n int) hashSlots {
	val, _ := hashSlotPool.LoadOrStore(hashSlotKey(realm, n), realmHashSlots{slots: newHashSlots(n)})
	return val.(realmHashSlots).slots
}

func releaseHashSlots(realm string, n int) {
	_, _ = hashSlotPool.Delete(hashSlotKey(realm, n))
}
