-- The whole pop in one script, for when redeliveries are due (see fast.lua
-- for the usual case). ARGV: max attempts (0: none), its reason, max
-- deliveries, lease ms.
-- Returns {hint ms (-1: nothing scheduled), last id of S, last id of W, the
-- consumer, redeliveries, then per delivery: id, fields, attempt, delivery
-- count}.
local max_attempts, exhausted = tonumber(ARGV[1]), ARGV[2]
local n, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, ready, counts = tick(max_attempts, exhausted)
local deadline = now + lease
local out = { 0, '', '', '', 0 }

-- Redeliveries first: their entries precede every entry not yet delivered.
local count = redeliver(ready, counts, n, deadline, out)
out[5] = count

if count < n then
  local r = redis.pcall('XREADGROUP', 'GROUP', G, C, 'COUNT', n - count, 'STREAMS', S, '>')
  if is_nogroup(r) then
    regroup()
    r = redis.call('XREADGROUP', 'GROUP', G, C, 'COUNT', n - count, 'STREAMS', S, '>')
  elseif type(r) == 'table' and r.err then
    return redis.error_reply(r.err)
  end
  if r then
    local first, last
    for _, e in ipairs(r[1][2]) do
      local f = e[2]
      if f then
        first = first or e[1]
        last = e[1]
        count = count + 1
        out[#out + 1] = e[1]
        out[#out + 1] = f
        out[#out + 1] = base_of(f) + 1
        out[#out + 1] = 1
      end
    end
    -- One lease record for the whole read: its entries are contiguous.
    if first then redis.call('ZADD', R, deadline, C .. ' ' .. first .. ' ' .. last) end
  end
end

out[4] = C
if count > 0 then return out end
local hint, last_s, last_w = wait_hint(now)
out[1], out[2], out[3] = hint, last_s, last_w
return out
