-- One fenced action on one delivery.
-- ARGV: max attempts (0: none), its reason, action ('nack' | 'release' |
-- 'extend' | 'dead'), entry id, delivery count, consumer, arg (delay ms | lease ms |
-- reason).
-- Returns 0 when the receipt is stale, 1 when done, 2 when a nack
-- dead-lettered the message (out of attempts).
local max_attempts, exhausted = tonumber(ARGV[1]), ARGV[2]
local action, id, cnt, cons, arg = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local p = pending(id)
if not (p and p[2] == cons and p[4] == cnt) then return 0 end
local now = now_ms()

if action == 'extend' then
  redis.call('ZADD', L, now + tonumber(arg), id)
  -- Keep XPENDING's idle time meaningful for operators; JUSTID leaves the
  -- delivery count, and so the receipt, as it is.
  redis.call('XCLAIM', S, G, cons, 0, id, 'JUSTID')
  return 1
end

local fields = entry_fields(id)
if not fields then
  forget({ id })
  return 0
end
local att = base_of(fields) + cnt

if action == 'dead' then
  dead_letter(id, fields, arg, att)
  return 1
end

if action == 'release' then
  if redis.call('SISMEMBER', P, id) == 1 then
    forget({ id })
    return 1
  end
  -- A new stream entry at the end of the line whose field 'a' is the
  -- deliveries before this one: the next delivery carries this attempt
  -- again. The old entry goes, so this receipt (and every older one) is
  -- stale. (Lowering the PEL count in place would give the redelivery the
  -- very same receipt as this delivery: no fencing.)
  local base = att - 1
  local f = portable(id, fields)
  if base > 0 then
    redis.call('XADD', S, '*', 'a', base, unpack(f))
  else
    redis.call('XADD', S, '*', unpack(f))
  end
  forget({ id })
  return 1
end

-- nack
if redis.call('SISMEMBER', P, id) == 1 then
  forget({ id })
  return 1
end
if max_attempts > 0 and att >= max_attempts then
  dead_letter(id, fields, exhausted, att)
  return 2
end
local delay = tonumber(arg)
if delay <= 0 then
  -- Due at once, keeping its stream entry and so its place in line. Moving
  -- it to the consumer 'n' (the count stays) makes every receipt stale.
  redis.call('XCLAIM', S, G, NACKED, 0, id, 'JUSTID')
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
