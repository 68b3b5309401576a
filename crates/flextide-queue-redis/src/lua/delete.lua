-- Fenced delete of a batch. ARGV: the lowest and the highest entry id, then
-- groups of receipts sharing a token: '<delivery count>.<consumer>', how
-- many, their entry ids. A receipt counts only if it is still its entry's
-- latest delivery, pending under the consumer that made it. Returns the
-- positions (1-based, in the order sent) of the stale receipts.
local lo, hi = ARGV[1], ARGV[2]
local total, i = 0, 3
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  total = total + n
  i = i + 2 + n
end

-- One XPENDING over the span of the ids: a batch popped together is one
-- contiguous run of the stream, so this is usually all it takes. Ids past
-- the end of a truncated reply are looked up one by one.
local want = total * 2 + 16
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

local stale, ok, seen, pos = {}, {}, {}, 0
i = 3
while i <= #ARGV do
  local c, cons = string.match(ARGV[i], '^(%d+)%.(.+)$')
  c = tonumber(c)
  local n = tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + n do
    pos = pos + 1
    local id = ARGV[j]
    local p = nil
    if span and not seen[id] then
      p = known[id]
      if not p and upto and id_less(upto, id) then p = pending(id) end
    end
    if p and p[2] == cons and p[4] == c then
      seen[id] = true
      ok[#ok + 1] = id
    else
      stale[#stale + 1] = pos
    end
  end
  i = i + 2 + n
end
forget(ok)
return stale
