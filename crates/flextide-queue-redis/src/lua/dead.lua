-- Dead-letter store operations. ARGV: max attempts (0: none), its reason,
-- op, then
--   'list', limit                -> dead-letter id, fields pairs, oldest first
--   'oldest', n                  -> how many of the n oldest were replayed
--   'ids', message id...         -> how many with these message ids were replayed
--   'delete', message id...      -> how many with these message ids were deleted
local op = ARGV[3]
tick(tonumber(ARGV[1]), ARGV[2], true)

if op == 'list' then
  local out = {}
  for _, e in ipairs(redis.call('XRANGE', X, '-', '+', 'COUNT', tonumber(ARGV[4]))) do
    out[#out + 1] = e[1]
    out[#out + 1] = e[2]
  end
  return out
end

local function replay(e)
  local f = portable(e[1], e[2])
  -- The dead-letter entry's own time is not the message's: portable() found 't'.
  redis.call('XADD', S, '*', unpack(f))
  redis.call('XDEL', X, e[1])
end

local moved = 0
if op == 'oldest' then
  for _, e in ipairs(redis.call('XRANGE', X, '-', '+', 'COUNT', tonumber(ARGV[4]))) do
    replay(e)
    moved = moved + 1
  end
  return moved
end

-- 'ids' or 'delete': a scan of the whole dead-letter stream for the entries
-- whose message id is wanted.
local act = replay
if op == 'delete' then
  act = function(e) redis.call('XDEL', X, e[1]) end
end
local want = {}
for i = 4, #ARGV do want[ARGV[i]] = true end
local from = '-'
while true do
  local batch = redis.call('XRANGE', X, from, '+', 'COUNT', 500)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'i' and want[f[i + 1]] then
        act(e)
        moved = moved + 1
        break
      end
    end
  end
  if #batch < 500 then break end
  from = '(' .. batch[#batch][1]
end
return moved
