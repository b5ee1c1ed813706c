local prefix, sid, user = KEYS[1], ARGV[1], ARGV[2]
local key = prefix .. 's:' .. sid
redis.call('DEL', key)
redis.call('HSET', key, 'user', user, 'created', ARGV[3], 'last_used', ARGV[4],
  'expires', ARGV[5], 'gen', ARGV[6], 'rotated_at', ARGV[7], 'revoked', ARGV[8], 'idle_ttl', ARGV[9],
  'signin', ARGV[12])
local exp_ms, now_ms = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('PEXPIREAT', key, ARGV[10])
redis.call('SADD', prefix .. 'u:' .. user, sid)
-- a session's deadline never passes its absolute expiry
extend(prefix .. 'u:' .. user, math.ceil(tonumber(ARGV[5]) / 1000), now_ms)
if ARGV[8] == '1' then
  redis.call('ZADD', prefix .. 'revoked', ARGV[10], sid)
  extend(prefix .. 'revoked', exp_ms, now_ms)
end
return 1
