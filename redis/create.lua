local prefix, sid, user = KEYS[1], ARGV[1], ARGV[2]
local key = prefix .. 's:' .. sid
local ukey = prefix .. 'u:' .. user
local exp_ms, now_ms = tonumber(ARGV[10]), tonumber(ARGV[11])
local max_live, minid = tonumber(ARGV[13]), ARGV[14]

-- the user's live sessions beyond max_live, oldest first (beyondLimit of
-- the Go stores), are revoked in this same step, so that concurrent logins
-- on any instances never leave more than max_live live
local evicted = {}
if max_live > 0 then
  local live = {}
  for _, other in ipairs(redis.call('SMEMBERS', ukey)) do
    local s = load(prefix .. 's:' .. other)
    if not s then
      redis.call('SREM', ukey, other)
    elseif other ~= sid and s.revoked ~= '1' and deadline(s) > now_ms * 1000 then
      live[#live + 1] = {sid = other, created = tonumber(s.created), s = s}
    end
  end
  table.sort(live, function(a, b)
    if a.created ~= b.created then return a.created < b.created end
    return a.sid < b.sid
  end)
  local lines = {}
  for i = 1, #live + 1 - max_live do
    lines[#lines + 1] = revoke(prefix, live[i].sid, live[i].s, now_ms)
    evicted[#evicted + 1] = live[i].sid
  end
  announce(prefix, lines, now_ms, minid)
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
end
return evicted
