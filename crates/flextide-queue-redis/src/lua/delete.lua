-- ARGV: pairs of entry id, token. Returns 1 (deleted) or 0 (stale) per pair.
local ids = {}
for i = 1, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local toks = redis.call('HMGET', K, unpack(ids))
local res, ok, seen = {}, {}, {}
for i, id in ipairs(ids) do
  if not seen[id] and toks[i] == ARGV[2 * i] then
    seen[id] = true
    ok[#ok + 1] = id
    res[i] = 1
  else
    res[i] = 0
  end
end
forget(ok)
return res
