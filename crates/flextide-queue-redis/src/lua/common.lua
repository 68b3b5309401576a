-- Shared prelude of every script. Every script gets the queue's nine keys in
-- this order, so each one touches only keys of one hash tag (one cluster slot):
--   S stream, D delayed zset (uid -> due ms), M delayed bodies (uid -> msgpack),
--   L own leases zset (entry id -> deadline ms) for deliveries whose deadline
--     is not their pop batch's: redeliveries, extended leases, nacked entries
--     (deadline 0: due at once) and leases written by the old layout,
--   X dead-letter stream,
--   P purged set (leased entries whose future redeliveries were purged),
--   W wake-up stream (one entry, bumped when a message becomes deliverable
--     without a new entry in S, so blocked consumers look again),
--   R batch leases zset ('<consumer> <first id> <last id>' -> deadline ms), one
--     member per fresh read: the entries between those ids were delivered
--     together with one lease,
--   V group epoch (a counter bumped each time the group is re-created).
--
-- The consumer group's pending entries list (PEL) is the delivery record: a
-- delivery is the pair (entry id, PEL delivery count) under the live
-- consumer 'c<epoch>'. A receipt names that pair and the consumer, so a stale
-- receipt fails the check against the PEL: a redelivery bumps the count, a
-- nack moves the entry to consumer 'n', an ack removes it, and a re-created
-- group reads entries again under a new consumer name. Nothing is written
-- per message on the hot path besides what XREADGROUP and XACK do.
--
-- A stream entry moved from the delayed set after a nack starts with the
-- field 'a': the deliveries it had before, so attempt = a + delivery count.
--
-- Entries may come from other producers (a plain XADD, contract clause 12),
-- so nothing here assumes a field holds what Flextide writes: the Rust side
-- decodes entries and dead-letters those that do not decode. Scripts that
-- do the due work take ARGV[1] max attempts (0: none) and ARGV[2] the
-- dead-letter reason for it, the core's one text.
local S, D, M, L, X, P, W, R, V = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local G, NACKED = 'flextide', 'n'

-- The live consumer: 'c' until the group is first re-created.
local C = 'c'
do
  local e = redis.call('GET', V)
  if e then C = 'c' .. e end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The millisecond part of a stream id.
local function id_ms(id)
  return tonumber(string.match(id, '^(%d+)'))
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

local function is_nogroup(r)
  return type(r) == 'table' and r.err ~= nil and string.find(r.err, 'NOGROUP', 1, true) ~= nil
end

-- Creates the group again when it vanished (a restart without persistence, a
-- FLUSHALL, an operator's XGROUP DESTROY), from the start of the stream so
-- messages pushed since are kept. Entries are then read again under a new
-- consumer name, so receipts of the lost group's deliveries stay stale, and
-- the lease records of those deliveries are dropped.
local function regroup()
  local r = redis.pcall('XGROUP', 'CREATE', S, G, '0', 'MKSTREAM')
  if type(r) == 'table' and r.err then return end -- BUSYGROUP: it exists
  C = 'c' .. redis.call('INCR', V)
  redis.call('DEL', L, R)
end

-- The PEL record of entry id: {id, consumer, idle ms, delivery count}, or nil
-- when it is not pending (or the group is gone).
local function pending(id)
  local r = redis.pcall('XPENDING', S, G, id, id, 1)
  if type(r) == 'table' and r.err then
    if is_nogroup(r) then return nil end
    error(r)
  end
  return r[1]
end

-- Removes entries and all their bookkeeping, in a few variadic calls.
local function forget(ids)
  if #ids == 0 then return end
  -- Most deliveries have no lease of their own: skip passing every id to
  -- ZREM when there is none.
  local own = redis.call('EXISTS', L) == 1
  local purged = redis.call('EXISTS', P) == 1
  for i = 1, #ids, 1000 do
    local chunk = ids
    if #ids > 1000 then
      chunk = {}
      for j = i, math.min(i + 999, #ids) do chunk[#chunk + 1] = ids[j] end
    end
    redis.pcall('XACK', S, G, unpack(chunk))
    redis.call('XDEL', S, unpack(chunk))
    if own then redis.call('ZREM', L, unpack(chunk)) end
    if purged then redis.call('SREM', P, unpack(chunk)) end
  end
end

local function entry_fields(id)
  local r = redis.call('XRANGE', S, id, id)
  if #r == 0 then return nil end
  return r[1][2]
end

-- Deliveries the message had before its current stream entry (field 'a').
local function base_of(fields)
  if fields[1] == 'a' then return tonumber(fields[2]) or 0 end
  return 0
end

-- The message's fields without our bookkeeping fields, with the enqueue time
-- ('t') made explicit so it survives a move to another stream entry, and
-- likewise the id of a message another producer wrote without one: the
-- 'redis-<entry id>' the Rust side derives (backend::foreign_id).
local function portable(id, fields)
  local out, has_t, has_i = {}, false, false
  for i = 1, #fields, 2 do
    local f = fields[i]
    if f ~= 'a' and f ~= 'why' and f ~= 'n' then
      if f == 't' then has_t = true end
      if f == 'i' then has_i = true end
      out[#out + 1] = f
      out[#out + 1] = fields[i + 1]
    end
  end
  if not has_t then
    out[#out + 1] = 't'
    out[#out + 1] = tostring(id_ms(id))
  end
  if not has_i then
    out[#out + 1] = 'i'
    out[#out + 1] = 'redis-' .. id
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

-- Looks at deliveries whose lease ended (and nacked ones, due at once):
-- dead-letters those out of attempts, drops purged ones, and returns the
-- rest (deliverable again) in stream order, with a table of their delivery
-- counts so far. `exhausted` is the reason of a move past max_attempts.
-- Gathers at most `limit` of them, looking at no more than `records` batch
-- lease records (each costs an XPENDING; most are spent, their entries
-- acknowledged, and are dropped here).
local function expired(now, max_attempts, exhausted, limit, records)
  local ready, counts, drop = {}, {}, {}
  local purged = redis.call('EXISTS', P) == 1
  local function consider(id, count)
    if purged and redis.call('SISMEMBER', P, id) == 1 then
      drop[#drop + 1] = id
      return
    end
    if max_attempts > 0 then
      local fields = entry_fields(id)
      if not fields then
        drop[#drop + 1] = id
        return
      end
      local att = base_of(fields) + count
      if att >= max_attempts then
        dead_letter(id, fields, exhausted, att)
        return
      end
    end
    ready[#ready + 1] = id
    counts[id] = count
  end

  -- Deliveries with a deadline of their own.
  local own = redis.call('ZRANGEBYSCORE', L, '-inf', now, 'LIMIT', 0, limit)
  local settled = {}
  for _, id in ipairs(own) do
    local p = pending(id)
    if p and (p[2] == C or p[2] == NACKED) then
      consider(id, tonumber(p[4]))
    else
      settled[#settled + 1] = id
    end
  end
  if #settled > 0 then redis.call('ZREM', L, unpack(settled)) end

  -- Fresh reads: a batch's entries still pending under its consumer with
  -- count 1 and no deadline of their own are still on that batch's lease.
  if #ready < limit then
    local recs = redis.call('ZRANGEBYSCORE', R, '-inf', now, 'LIMIT', 0, records or limit)
    local done = {}
    for _, rec in ipairs(recs) do
      if #ready >= limit then break end
      local c, first, last = string.match(rec, '^(%S+) (%S+) (%S+)$')
      local r = c and redis.pcall('XPENDING', S, G, first, last, 1000, c)
      local left = false
      if type(r) == 'table' and r.err == nil then
        for _, e in ipairs(r) do
          if tonumber(e[4]) == 1 and not redis.call('ZSCORE', L, e[1]) then
            left = true
            consider(e[1], 1)
          end
        end
      elseif type(r) == 'table' and not is_nogroup(r) then
        error(r)
      end
      if not left then done[#done + 1] = rec end
    end
    if #done > 0 then redis.call('ZREM', R, unpack(done)) end
  end

  forget(drop)
  table.sort(ready, id_less)
  return ready, counts
end

-- Claims up to n of the ready redeliveries for C with a lease to `deadline`
-- (XCLAIM bumps the delivery count, which makes the earlier receipt stale),
-- appending id, fields, attempt, count per delivery to out. Returns how
-- many it delivered.
local function redeliver(ready, counts, n, deadline, out)
  local count, own, gone = 0, {}, {}
  for _, id in ipairs(ready) do
    if count >= n then break end
    local r = redis.pcall('XCLAIM', S, G, C, 0, id)
    if type(r) == 'table' and r[1] and r[1][2] then
      local f, c = r[1][2], counts[id] + 1
      count = count + 1
      own[#own + 1] = deadline
      own[#own + 1] = id
      out[#out + 1] = id
      out[#out + 1] = f
      out[#out + 1] = base_of(f) + c
      out[#out + 1] = c
    elseif type(r) == 'table' and r.err == nil then
      gone[#gone + 1] = id
    end
  end
  forget(gone)
  if #own > 0 then redis.call('ZADD', L, unpack(own)) end
  return count
end

-- Work every call does before looking at the queue: no background process
-- is needed for delays, lease expiry or max attempts.
-- Without a limit (stats, purge: every expired delivery), else at most
-- 1000 redeliveries found from at most 100 batch lease records.
local function tick(max_attempts, exhausted, all)
  local now = now_ms()
  move_due(now)
  local ready, counts
  if all then
    ready, counts = expired(now, max_attempts, exhausted, 1000000000)
  else
    ready, counts = expired(now, max_attempts, exhausted, 1000, 100)
  end
  return now, ready, counts
end

-- With nothing to deliver: how long the caller may block (-1: nothing
-- scheduled) and the last ids of S and W to block from. A batch lease record
-- is often spent already (its entries acknowledged), so waking for one is
-- worth it only every so often.
local function wait_hint(now)
  local hint = -1
  local function sooner(key, floor)
    local z = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if z[2] then
      local h = math.max(tonumber(z[2]) - now, floor)
      if hint < 0 or h < hint then hint = h end
    end
  end
  sooner(D, 1)
  sooner(L, 1)
  sooner(R, 25)
  return hint, last_id(S), last_id(W)
end
