-- ARGV: max attempts (0: none).
-- Returns {depth, in flight, delayed, dead-lettered, oldest enqueue ms (-1: none), now ms}.
local now, ready = tick(tonumber(ARGV[1]))
local xlen = redis.call('XLEN', S)
local leased = redis.call('ZCARD', L)
local due = redis.call('ZCOUNT', L, '-inf', now)
local oldest = -1
local first = redis.call('XRANGE', S, '-', '+', 'COUNT', 1)
if first[1] then
  oldest = id_ms(first[1][1])
  local f = first[1][2]
  for i = 1, #f, 2 do
    if f[i] == 't' then oldest = tonumber(f[i + 1]) end
  end
end
return { xlen - leased + due, leased - due, redis.call('ZCARD', D), redis.call('XLEN', X), oldest, now }
