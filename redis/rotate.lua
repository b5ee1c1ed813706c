local prefix, sid = KEYS[1], ARGV[1]
local key = prefix .. 's:' .. sid
local s = load(key)
if not s then return {-1} end
local presented, now, grace = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now_ms, minid = tonumber(ARGV[5]), ARGV[6]
local gen = tonumber(s.gen)
local outcome
if s.revoked == '1' then
  outcome = 3 -- refusedRevoked
elseif now >= deadline(s) then
  outcome = 4 -- refusedExpired
elseif presented >= gen and presented < MAX_GENERATION then
  -- a generation ahead of the store's catches up (decideRotation)
  outcome = 0 -- rotated
  if presented > gen then outcome = 5 end -- caughtUp
  redis.call('HSET', key, 'gen', int(presented + 1), 'rotated_at', ARGV[3], 'last_used', ARGV[3])
  s.last_used = ARGV[3]
  redis.call('PEXPIREAT', key, int(math.ceil(deadline(s) / 1000)))
elseif presented + 1 == gen and grace > 0 and s.rotated_at ~= '0' and now - tonumber(s.rotated_at) <= grace then
  outcome = 1 -- graced
else
  outcome = 2 -- reused
  announce(prefix, {revoke(prefix, sid, s, now_ms)}, now_ms, minid)
end
local _, h = load(key)
local out = {outcome}
for i = 1, #h do out[#out + 1] = h[i] end
return out
