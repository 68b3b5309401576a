-- ARGV: max attempts (0: none), its reason, limit. Returns id, fields pairs
-- in delivery order.
local limit = tonumber(ARGV[3])
local now, ready = tick(tonumber(ARGV[1]), ARGV[2])
local out, count = {}, 0
for _, id in ipairs(ready) do
  if count >= limit then return out end
  local f = entry_fields(id)
  if f then
    out[#out + 1] = id
    out[#out + 1] = f
    count = count + 1
  end
end
-- Entries never delivered are exactly those not pending (an acknowledged
-- entry is deleted).
local from = '-'
while count < limit do
  local batch = redis.call('XRANGE', S, from, '+', 'COUNT', 500)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if count >= limit then break end
    if not pending(e[1]) then
      out[#out + 1] = e[1]
      out[#out + 1] = e[2]
      count = count + 1
    end
  end
  if #batch < 500 then break end
  from = '(' .. batch[#batch][1]
end
return out
