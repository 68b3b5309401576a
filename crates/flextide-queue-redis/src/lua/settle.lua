-- One fenced action on one delivery.
-- ARGV: action ('nack' | 'extend' | 'dead'), entry id, token, arg (delay ms |
-- lease ms | reason), max attempts (0: none).
-- Returns 0 when the receipt is stale, 1 when done, 2 when a nack
-- dead-lettered the message (out of attempts).
local action, id, tok, arg, max_attempts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HGET', K, id) ~= tok then return 0 end
local now = now_ms()

if action == 'extend' then
  redis.call('ZADD', L, 'XX', now + tonumber(arg), id)
  -- Keep XPENDING's idle time meaningful for operators.
  redis.pcall('XCLAIM', S, G, C, 0, id, 'JUSTID')
  return 1
end

local fields = entry_fields(id)
if not fields then
  forget({ id })
  return 0
end
local att = attempts_of(tok)

if action == 'dead' then
  dead_letter(id, fields, arg, att)
  return 1
end

-- nack
if redis.call('SISMEMBER', P, id) == 1 then
  forget({ id })
  return 1
end
if max_attempts > 0 and att >= max_attempts then
  dead_letter(id, fields, 'max attempts exceeded (' .. max_attempts .. ')', att)
  return 2
end
local delay = tonumber(arg)
if delay <= 0 then
  -- Due at once, keeping its stream entry and so its place in line; the
  -- token loses its nonce, so no receipt matches it any more.
  redis.call('HSET', K, id, att .. '.')
  redis.call('ZADD', L, 0, id)
  wake()
  return 1
end
local f = portable(id, fields)
f[#f + 1] = 'a'
f[#f + 1] = tostring(att)
local uid = 'n' .. id
redis.call('HSET', M, uid, cmsgpack.pack(f))
redis.call('ZADD', D, now + delay, uid)
forget({ id })
return 1
