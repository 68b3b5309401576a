-- ARGV: max attempts (0: none), its reason.
-- Returns {depth, in flight, delayed, dead-lettered, oldest enqueue ms (-1: none), now ms}.
-- Every expired delivery is looked at, so the counts are exact.
local now, ready = tick(tonumber(ARGV[1]), ARGV[2], true)
local xlen = redis.call('XLEN', S)
local leased = 0
local summary = redis.pcall('XPENDING', S, G)
if type(summary) == 'table' and summary.err == nil then
  leased = tonumber(summary[1])
elseif not is_nogroup(summary) then
  error(summary)
end
local due = #ready
local oldest = -1
local first = redis.call('XRANGE', S, '-', '+', 'COUNT', 1)
if first[1] then
  oldest = id_ms(first[1][1])
  local f = first[1][2]
  for i = 1, #f, 2 do
    if f[i] == 't' then oldest = tonumber(f[i + 1]) or oldest end
  end
end
return { xlen - leased + due, leased - due, redis.call('ZCARD', D), redis.call('XLEN', X), oldest, now }
