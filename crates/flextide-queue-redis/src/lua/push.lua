-- ARGV, per message: delay ms, uid (for delayed ones), field count, fields...
-- Returns the number of messages taken.
local now = nil
local i, taken = 1, 0
while i <= #ARGV do
  local delay, uid, nf = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  local f = {}
  for j = 1, nf do f[j] = ARGV[i + 2 + j] end
  i = i + 3 + nf
  if delay > 0 then
    now = now or now_ms()
    f[#f + 1] = 't'
    f[#f + 1] = tostring(now)
    redis.call('HSET', M, uid, cmsgpack.pack(f))
    redis.call('ZADD', D, now + delay, uid)
  else
    redis.call('XADD', S, '*', unpack(f))
  end
  taken = taken + 1
end
return taken
