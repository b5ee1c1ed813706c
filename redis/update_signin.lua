local key = KEYS[1] .. 's:' .. ARGV[1]
local s = load(key)
if not s or s.revoked == '1' or tonumber(ARGV[4]) >= deadline(s) then return -1 end
if (s.signin or '') ~= ARGV[2] then return 0 end
redis.call('HSET', key, 'signin', ARGV[3])
return 1
