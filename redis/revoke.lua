local prefix, now_ms, minid = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local lines, ids = {}, {}
for i = 3, #ARGV do
  local s = load(prefix .. 's:' .. ARGV[i])
  if s and s.revoked ~= '1' then
    lines[#lines + 1] = revoke(prefix, ARGV[i], s, now_ms)
    ids[#ids + 1] = ARGV[i]
  end
end
announce(prefix, lines, now_ms, minid)
return ids
