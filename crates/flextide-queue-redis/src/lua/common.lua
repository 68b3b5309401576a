-- Shared prelude of every script. Every script gets the queue's eight keys in
-- this order, so each one touches only keys of one hash tag (one cluster slot):
--   S stream, D delayed zset (uid -> due ms), M delayed bodies (uid -> msgpack),
--   L leases zset (entry id -> deadline ms),
--   K delivery tokens (entry id -> '<attempt>.<nonce>'; '<attempt>.' once
--     nacked, which no receipt matches),
--   X dead-letter stream,
--   P purged set (leased entries whose future redeliveries were purged),
--   W wake-up stream (one entry, bumped when a message becomes deliverable
--     without a new entry in S, so blocked consumers look again).
-- A stream entry moved from the delayed set after a nack starts with the
-- field 'a': the deliveries it had before.
local S, D, M, L, K, X, P, W = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local G, C = 'flextide', 'c'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The millisecond part of a stream id.
local function id_ms(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- The attempt count in a token value.
local function attempts_of(tok)
  if not tok then return 0 end
  return tonumber(string.match(tok, '^(%d+)')) or 0
end

local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end

local function wake()
  redis.call('XADD', W, 'MAXLEN', 1, '*', 'w', '1')
end

local function last_id(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if last[1] then return last[1][1] end
  return '0-0'
end

local function ensure_group()
  -- BUSYGROUP (it exists) is the normal case and ignored.
  redis.pcall('XGROUP', 'CREATE', S, G, '0', 'MKSTREAM')
end

local function is_nogroup(r)
  return type(r) == 'table' and r.err ~= nil and string.find(r.err, 'NOGROUP', 1, true) ~= nil
end

-- Removes entries and all their bookkeeping, in a few variadic calls.
local function forget(ids)
  if #ids == 0 then return end
  local purged = redis.call('EXISTS', P) == 1
  for i = 1, #ids, 1000 do
    local chunk = ids
    if #ids > 1000 then
      chunk = {}
      for j = i, math.min(i + 999, #ids) do chunk[#chunk + 1] = ids[j] end
    end
    redis.pcall('XACK', S, G, unpack(chunk))
    redis.call('XDEL', S, unpack(chunk))
    redis.call('HDEL', K, unpack(chunk))
    redis.call('ZREM', L, unpack(chunk))
    if purged then redis.call('SREM', P, unpack(chunk)) end
  end
end

local function entry_fields(id)
  local r = redis.call('XRANGE', S, id, id)
  if #r == 0 then return nil end
  return r[1][2]
end

-- The message's fields without our bookkeeping fields, with the enqueue time
-- ('t') made explicit so it survives a move to another stream entry.
local function portable(id, fields)
  local out, has_t = {}, false
  for i = 1, #fields, 2 do
    local f = fields[i]
    if f ~= 'a' and f ~= 'why' and f ~= 'n' then
      if f == 't' then has_t = true end
      out[#out + 1] = f
      out[#out + 1] = fields[i + 1]
    end
  end
  if not has_t then
    out[#out + 1] = 't'
    out[#out + 1] = tostring(id_ms(id))
  end
  return out
end

local function dead_letter(id, fields, reason, attempts)
  local f = portable(id, fields)
  f[#f + 1] = 'why'
  f[#f + 1] = reason
  f[#f + 1] = 'n'
  f[#f + 1] = tostring(attempts)
  redis.call('XADD', X, '*', unpack(f))
  forget({ id })
end

-- Moves delayed messages that are due into the stream.
local function move_due(now)
  local due = redis.call('ZRANGEBYSCORE', D, '-inf', now, 'LIMIT', 0, 1000)
  if #due == 0 then return end
  for _, u in ipairs(due) do
    local blob = redis.call('HGET', M, u)
    if blob then
      local f = cmsgpack.unpack(blob)
      local base, out = 0, {}
      for i = 1, #f, 2 do
        if f[i] == 'a' then base = tonumber(f[i + 1]) else
          out[#out + 1] = f[i]
          out[#out + 1] = f[i + 1]
        end
      end
      if base > 0 then
        redis.call('XADD', S, '*', 'a', base, unpack(out))
      else
        redis.call('XADD', S, '*', unpack(out))
      end
    end
  end
  redis.call('ZREM', D, unpack(due))
  redis.call('HDEL', M, unpack(due))
end

-- Looks at leases that ended: dead-letters those out of attempts, drops
-- purged ones, and returns the rest (deliverable again) in stream order,
-- with a table of their attempt counts so far.
local function expired(now, max_attempts)
  local ids = redis.call('ZRANGEBYSCORE', L, '-inf', now, 'LIMIT', 0, 1000)
  local ready, drop, counts = {}, {}, {}
  if #ids == 0 then return ready, counts end
  local toks = redis.call('HMGET', K, unpack(ids))
  local purged = redis.call('EXISTS', P) == 1
  for i, id in ipairs(ids) do
    local att = attempts_of(toks[i])
    if purged and redis.call('SISMEMBER', P, id) == 1 then
      drop[#drop + 1] = id
    elseif max_attempts > 0 and att >= max_attempts then
      local fields = entry_fields(id)
      if fields then
        dead_letter(id, fields, 'max attempts exceeded (' .. max_attempts .. ')', att)
      else
        drop[#drop + 1] = id
      end
    else
      ready[#ready + 1] = id
      counts[id] = att
    end
  end
  forget(drop)
  table.sort(ready, id_less)
  return ready, counts
end

-- Work every call does before looking at the queue: no background process
-- is needed for delays, lease expiry or max attempts.
local function tick(max_attempts)
  local now = now_ms()
  move_due(now)
  local ready, counts = expired(now, max_attempts)
  return now, ready, counts
end
