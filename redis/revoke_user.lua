local prefix, user, now_ms, minid = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ukey = prefix .. 'u:' .. user
local lines, ids = {}, {}
for _, sid in ipairs(redis.call('SMEMBERS', ukey)) do
  local s = load(prefix .. 's:' .. sid)
  if not s then
    redis.call('SREM', ukey, sid)
  elseif s.revoked ~= '1' then
    lines[#lines + 1] = revoke(prefix, sid, s, now_ms)
    ids[#ids + 1] = sid
  end
end
announce(prefix, lines, now_ms, minid)
return ids
