-- Fenced delete of a batch. ARGV: the lowest and the highest entry id, then
-- groups of receipts sharing a token: '<delivery count>.<consumer>', how
-- many, their entry ids. A receipt counts only if it is still its entry's
-- latest delivery, pending under the consumer that made it. Returns the
-- positions (1-based, in the order sent) of the stale receipts.
--
-- Lua's cost is mostly converting values, so the usual receipt is checked
-- without reading the PEL: a first delivery ('1.<live consumer>') of an
-- entry with no lease of its own in L is still current exactly when the
-- entry is pending (every redelivery, nack, give-back and extension puts
-- the entry in L; a re-created group reads under a new consumer). For
-- those, XACK itself is the check. Every other receipt is compared with the
-- PEL.
local lo, hi = ARGV[1], ARGV[2]
local first = '1.' .. C
local own = redis.call('EXISTS', L) == 1

-- Split the receipts: fast ones (positions, ids) and the others.
local fpos, fids, spos, sids, scount, scons = {}, {}, {}, {}, {}, {}
local pos, i = 0, 3
while i <= #ARGV do
  local tok, n = ARGV[i], tonumber(ARGV[i + 1])
  if tok == first then
    for j = i + 2, i + 1 + n do
      pos = pos + 1
      fpos[#fpos + 1] = pos
      fids[#fids + 1] = ARGV[j]
    end
  else
    local c, cons = string.match(tok, '^(%d+)%.(.+)$')
    c = tonumber(c)
    for j = i + 2, i + 1 + n do
      pos = pos + 1
      spos[#spos + 1] = pos
      sids[#sids + 1] = ARGV[j]
      scount[#sids] = c
      scons[#sids] = cons
    end
  end
  i = i + 2 + n
end
if own and #fids > 0 then
  -- Entries with a lease of their own go the slow way.
  local scores = redis.call('ZMSCORE', L, unpack(fids))
  local keep_pos, keep_ids = {}, {}
  for k, id in ipairs(fids) do
    if scores[k] then
      spos[#spos + 1] = fpos[k]
      sids[#sids + 1] = id
      scount[#sids] = 1
      scons[#sids] = C
    else
      keep_pos[#keep_pos + 1] = fpos[k]
      keep_ids[#keep_ids + 1] = id
    end
  end
  fpos, fids = keep_pos, keep_ids
end

local stale, done, seen = {}, {}, {}

if #fids > 0 then
  local acked = redis.pcall('XACK', S, G, unpack(fids))
  if type(acked) == 'table' and acked.err then
    if not is_nogroup(acked) then error(acked) end
    for _, p in ipairs(fpos) do stale[#stale + 1] = p end
  elseif acked == #fids then
    for _, id in ipairs(fids) do seen[id] = true end
    redis.call('XDEL', S, unpack(fids))
    done = fids
  else
    -- Some were not pending (settled before, or listed twice). An entry
    -- stops being pending only when it is deleted, so the ones still in
    -- the stream are those this XACK acknowledged.
    local live = {}
    for k, id in ipairs(fids) do
      if not seen[id] and #redis.call('XRANGE', S, id, id) > 0 then
        seen[id] = true
        live[#live + 1] = id
      else
        stale[#stale + 1] = fpos[k]
      end
    end
    if #live > 0 then redis.call('XDEL', S, unpack(live)) end
    done = live
  end
  if #done > 0 and redis.call('EXISTS', P) == 1 then redis.call('SREM', P, unpack(done)) end
end

if #sids > 0 then
  -- One XPENDING over the span of the ids: a batch popped together is one
  -- contiguous run of the stream, so this is usually all it takes. Ids
  -- past the end of a truncated reply are looked up one by one.
  local want = #sids * 2 + 16
  local span = redis.pcall('XPENDING', S, G, lo, hi, want)
  local known, upto = {}, nil
  if type(span) == 'table' and span.err == nil then
    for _, e in ipairs(span) do known[e[1]] = e end
    if #span >= want then upto = span[#span][1] end
  elseif is_nogroup(span) then
    span = nil
  else
    error(span)
  end
  local ok = {}
  for k, id in ipairs(sids) do
    local p = nil
    if span and not seen[id] then
      p = known[id]
      if not p and upto and id_less(upto, id) then p = pending(id) end
    end
    if p and p[2] == scons[k] and p[4] == scount[k] then
      seen[id] = true
      ok[#ok + 1] = id
    else
      stale[#stale + 1] = spos[k]
    end
  end
  forget(ok)
end
return stale
