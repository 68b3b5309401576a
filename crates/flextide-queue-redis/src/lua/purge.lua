-- Removes every message not leased, marks leased ones so that they are not
-- delivered again. ARGV: none. Returns how many were removed.
local now = now_ms()
local removed = redis.call('ZCARD', D)
redis.call('DEL', D, M)
-- Expired and nacked deliveries are not leased any more.
local ready = expired(now, 0, '', 1000000000)
local due = {}
for _, id in ipairs(ready) do due[id] = true end
local from, drop = '-', {}
while true do
  local batch = redis.call('XRANGE', S, from, '+', 'COUNT', 500)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if due[e[1]] or not pending(e[1]) then
      drop[#drop + 1] = e[1]
    else
      redis.call('SADD', P, e[1])
    end
  end
  if #batch < 500 then break end
  from = '(' .. batch[#batch][1]
end
forget(drop)
return removed + #drop
