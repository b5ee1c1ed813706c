package tokenauth

import (
	"embed"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts that make the Redis store's changes atomic. Each runs
// inside Redis as one step; their sources are the .lua files under redis/,
// each prefixed with redis/common.lua.

// revocationLogWindow is how long revocations stay in the stream. An
// instance that could not read the stream for longer than half of it
// reloads the whole revoked set instead.
const revocationLogWindow = 10 * time.Minute

// luaSources are the scripts. redis/common.lua holds the helpers every
// script shares and is put before each. Numbers that do not fit %.14g
// (times) are never converted back to strings in Lua: the scripts only
// store strings they were given.
//
//go:embed redis/*.lua
var luaSources embed.FS

// luaScript is the script redis/<name> after the shared helpers, with the
// stream's retention and the largest generation filled in.
func luaScript(name string) *redis.Script {
	constants := strings.NewReplacer(
		"ARGV_LOG_WINDOW", strconv.FormatInt(revocationLogWindow.Milliseconds(), 10),
		"MAX_GENERATION", strconv.FormatUint(maxGeneration, 10))
	return redis.NewScript(constants.Replace(luaSource("common.lua") + "\n" + luaSource(name)))
}

func luaSource(name string) string {
	src, err := luaSources.ReadFile("redis/" + name)
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	return string(src)
}

// createScript: KEYS = prefix; ARGV = sid, user, created, last_used,
// expires, gen, rotated_at, revoked, idle_ttl, expiry ms, now ms, sign-in
// JSON, max live sessions of the user (0: no limit), stream MINID.
// Returns the sids it revoked to keep the user within the limit.
var createScript = luaScript("create.lua")

// rotateScript is decideRotation in Lua; the conformance suite runs both
// on the same cases. KEYS = prefix; ARGV = sid, presented
// generation, now (µs), grace (µs), now ms, stream MINID.
// Returns {outcome, session fields...}, or {-1} for an unknown session.
var rotateScript = luaScript("rotate.lua")

// revokeScript: KEYS = prefix; ARGV = now ms, stream MINID, sids...
// Revokes the live sessions named and returns their ids.
var revokeScript = luaScript("revoke.lua")

// revokeUserScript: KEYS = prefix; ARGV = user, now ms, stream MINID.
var revokeUserScript = luaScript("revoke_user.lua")

// updateSignInScript swaps a live session's sign-in field if it still
// holds what the caller read. KEYS = prefix; ARGV = sid, expected field,
// new field, now (µs). Returns 1 when swapped, 0 when the field changed
// meanwhile (read again), -1 when the session is gone, revoked or expired.
var updateSignInScript = luaScript("update_signin.lua")

// streamMinID is the oldest stream entry kept, as a stream ID.
func streamMinID(now time.Time) string {
	return strconv.FormatInt(now.Add(-revocationLogWindow).UnixMilli(), 10)
}
