-- Enqueues a batch, dropping messages whose dedup id was pushed within its
-- window (contract clause 16): the check and the insert are one script, so
-- concurrent pushes of one id from any number of clients enqueue one.
-- KEYS: the nine, then U (dedup id -> first message id) and E (dedup id ->
-- end of its window, ms). Both expire with the last window they hold.
-- ARGV: the dedup window ms, then per message: delay ms, uid (for delayed
-- ones), 1 and the dedup id and message id or 0, field count, fields...
-- Returns per message 0 when it was enqueued, else the first message's id.
local U, E = KEYS[10], KEYS[11]
local window = tonumber(ARGV[1])
local now = nil
local out, remembered, swept = {}, false, false
local i = 2
while i <= #ARGV do
  local delay, uid, d = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local first = nil
  if d == '1' then
    local key, id = ARGV[i], ARGV[i + 1]
    i = i + 2
    now = now or now_ms()
    if not swept then
      -- Forget some ids whose window ended, so U and E hold about one
      -- window's worth of pushes however long the queue lives.
      local old = redis.call('ZRANGEBYSCORE', E, '-inf', now, 'LIMIT', 0, 100)
      if #old > 0 then
        redis.call('ZREM', E, unpack(old))
        redis.call('HDEL', U, unpack(old))
      end
      swept = true
    end
    local score = redis.call('ZSCORE', E, key)
    local ends = score and tonumber(score)
    if ends and ends > now then first = redis.call('HGET', U, key) or nil end
    if not first then
      redis.call('HSET', U, key, id)
      redis.call('ZADD', E, now + window, key)
      remembered = true
    end
  end
  local nf = tonumber(ARGV[i])
  local f = {}
  for j = 1, nf do f[j] = ARGV[i + j] end
  i = i + 1 + nf
  if first then
    out[#out + 1] = first
  else
    if delay > 0 then
      now = now or now_ms()
      f[#f + 1] = 't'
      f[#f + 1] = tostring(now)
      redis.call('HSET', M, uid, cmsgpack.pack(f))
      redis.call('ZADD', D, now + delay, uid)
    else
      redis.call('XADD', S, '*', unpack(f))
    end
    out[#out + 1] = 0
  end
end
if remembered then
  local last = redis.call('ZRANGE', E, -1, -1, 'WITHSCORES')[2]
  redis.call('PEXPIREAT', U, last)
  redis.call('PEXPIREAT', E, last)
end
return out
