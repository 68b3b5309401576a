-- First half of a fast pop. A fast pop is one MULTI/EXEC of this script, a
-- plain XREADGROUP (so message bodies never pass through Lua) and post.lua,
-- which writes the lease record of what XREADGROUP read. KEYS: the nine
-- keys, then T (scratch key passing this script's findings to post.lua
-- within the transaction). ARGV: max attempts (0: none), its reason, max
-- deliveries, lease ms.
-- Returns {the consumer, then per redelivery: id, fields, attempt, count}.
local max_attempts, exhausted = tonumber(ARGV[1]), ARGV[2]
local n, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local T = KEYS[10]

-- Where the XREADGROUP will start: after the group's last delivered id.
local function last_delivered()
  local r = redis.pcall('XINFO', 'GROUPS', S)
  if type(r) == 'table' and r.err == nil then
    for _, g in ipairs(r) do
      local name, last
      for i = 1, #g, 2 do
        if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
      end
      if name == G then return last end
    end
  end
  regroup()
  return '0-0'
end

local before = last_delivered()
-- Written first: should anything below fail, post.lua sees k = -1 and gives
-- back whatever the XREADGROUP read.
redis.call('SET', T, before .. ' -1 ' .. C)
local now, ready, counts = tick(max_attempts, exhausted)
local out = { '' }
local k = redeliver(ready, counts, n, now + lease, out)
redis.call('SET', T, before .. ' ' .. k .. ' ' .. C)
out[1] = C
return out
