-- int renders a number for Redis exactly (never as 1.7e+15)
local function int(n) return string.format('%d', n) end

local function load(key)
  local h = redis.call('HGETALL', key)
  if #h == 0 then return nil, h end
  local s = {}
  for i = 1, #h, 2 do s[h[i]] = h[i + 1] end
  return s, h
end

-- deadline: Session.deadline() of the Go code, in microseconds
local function deadline(s)
  local d = tonumber(s.expires)
  local idle = tonumber(s.idle_ttl)
  if idle > 0 then
    local i = tonumber(s.last_used) + idle
    if i < d then d = i end
  end
  return d
end

-- keep a shared key (user index, revoked set) at least until ms
local function extend(key, ms, now_ms)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or ttl < ms - now_ms then redis.call('PEXPIREAT', key, int(ms)) end
end

-- revoke marks a live session revoked and records it for every instance
-- (sorted set, stream, pub/sub). Returns the line of the revocation.
local function revoke(prefix, sid, s, now_ms)
  redis.call('HSET', prefix .. 's:' .. sid, 'revoked', '1')
  local until_ms = math.ceil(deadline(s) / 1000)
  redis.call('ZADD', prefix .. 'revoked', int(until_ms), sid)
  redis.call('ZREMRANGEBYSCORE', prefix .. 'revoked', '-inf', int(now_ms))
  extend(prefix .. 'revoked', until_ms, now_ms)
  return sid .. ' ' .. int(until_ms)
end

local function announce(prefix, lines, now_ms, minid)
  if #lines == 0 then return end
  local msg = table.concat(lines, '\n')
  redis.call('XADD', prefix .. 'revocations', 'MINID', '~', minid, '*', 'r', msg)
  redis.call('PEXPIRE', prefix .. 'revocations', ARGV_LOG_WINDOW)
  redis.call('PUBLISH', prefix .. 'revocations', msg)
end
