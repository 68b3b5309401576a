-- ARGV: triples of entry id, delivery count, consumer (a receipt). Returns 1
-- (deleted) or 0 (stale) per receipt: it must still be the entry's latest
-- delivery, pending under the consumer that made it.
local ids, ms, seq = {}, {}, {}
local lo, hi
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  local n = #ids + 1
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  ids[n], ms[n], seq[n] = id, tonumber(a), tonumber(b)
  if not lo or ms[n] < ms[lo] or (ms[n] == ms[lo] and seq[n] < seq[lo]) then lo = n end
  if not hi or ms[n] > ms[hi] or (ms[n] == ms[hi] and seq[n] > seq[hi]) then hi = n end
end

-- One XPENDING over the span of the ids: a batch popped together is one
-- contiguous run of the stream, so this is usually all it takes. Ids past
-- the end of a truncated reply are looked up one by one.
local want = #ids * 2 + 16
local span = redis.pcall('XPENDING', S, G, ids[lo], ids[hi], want)
local known, upto_ms, upto_seq = {}, nil, nil
if type(span) == 'table' and span.err == nil then
  for _, e in ipairs(span) do known[e[1]] = e end
  upto_ms, upto_seq = ms[hi], seq[hi]
  if #span >= want then
    local a, b = string.match(span[#span][1], '^(%d+)-(%d+)$')
    upto_ms, upto_seq = tonumber(a), tonumber(b)
  end
elseif not is_nogroup(span) then
  error(span)
end

local res, ok, seen = {}, {}, {}
for i, id in ipairs(ids) do
  local p = false
  if not seen[id] then
    if upto_ms and (ms[i] < upto_ms or (ms[i] == upto_ms and seq[i] <= upto_seq)) then
      p = known[id]
    else
      p = pending(id)
    end
  end
  local j = 3 * i - 2
  if p and p[2] == ARGV[j + 2] and p[4] == tonumber(ARGV[j + 1]) then
    seen[id] = true
    ok[#ok + 1] = id
    res[i] = 1
  else
    res[i] = 0
  end
end
forget(ok)
return res
