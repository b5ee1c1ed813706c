local prefix, sid, user = KEYS[1], ARGV[1], ARGV[2]
local key = prefix .. 's:' .. sid
local ukey = prefix .. 'u:' .. user
local lkey = prefix .. 'l:' .. user
local exp_ms, now_ms = tonumber(ARGV[10]), tonumber(ARGV[11])
local max_live, minid = tonumber(ARGV[13]), ARGV[14]

-- The live index l:<user> holds the sessions not known to be revoked or
-- expired, so that this scan stays as short as max_live however many
-- revoked sessions the user has (u:<user> keeps those until they expire).
-- Entries found revoked, expired or gone are dropped on the way. Sessions
-- created before the index existed are found through u:<user> once.
local members
local seeding = redis.call('EXISTS', lkey) == 0
if seeding then
  members = redis.call('SMEMBERS', ukey)
else
  members = redis.call('ZRANGE', lkey, 0, -1)
end
local live = {}
for _, other in ipairs(members) do
  local s = load(prefix .. 's:' .. other)
  if s and other ~= sid and s.revoked ~= '1' and deadline(s) > now_ms * 1000 then
    live[#live + 1] = {sid = other, created = tonumber(s.created), s = s}
  else
    redis.call('ZREM', lkey, other)
  end
end

-- the user's live sessions beyond max_live, oldest first (beyondLimit of
-- the Go stores), are revoked in this same step, so that concurrent logins
-- on any instances never leave more than max_live live
table.sort(live, function(a, b)
  if a.created ~= b.created then return a.created < b.created end
  return a.sid < b.sid
end)
local excess = 0
if max_live > 0 then excess = math.max(0, #live + 1 - max_live) end
local evicted, lines = {}, {}
for i = 1, excess do
  lines[#lines + 1] = revoke(prefix, live[i].sid, live[i].s, now_ms)
  evicted[#evicted + 1] = live[i].sid
  redis.call('ZREM', lkey, live[i].sid)
end
announce(prefix, lines, now_ms, minid)
if seeding then
  for i = excess + 1, #live do redis.call('ZADD', lkey, int(live[i].created), live[i].sid) end
end

redis.call('DEL', key)
redis.call('HSET', key, 'user', user, 'created', ARGV[3], 'last_used', ARGV[4],
  'expires', ARGV[5], 'gen', ARGV[6], 'rotated_at', ARGV[7], 'revoked', ARGV[8], 'idle_ttl', ARGV[9],
  'signin', ARGV[12])
redis.call('PEXPIREAT', key, ARGV[10])
redis.call('SADD', ukey, sid)
-- a session's deadline never passes its absolute expiry
extend(ukey, math.ceil(tonumber(ARGV[5]) / 1000), now_ms)
if ARGV[8] == '1' then
  redis.call('ZADD', prefix .. 'revoked', ARGV[10], sid)
  extend(prefix .. 'revoked', exp_ms, now_ms)
else
  redis.call('ZADD', lkey, ARGV[3], sid)
end
if redis.call('EXISTS', lkey) == 1 then
  extend(lkey, math.ceil(tonumber(ARGV[5]) / 1000), now_ms)
end
return evicted
