-- Second half of a fast pop (see fast.lua), run after its XREADGROUP in the
-- same MULTI/EXEC, so nothing can come between. Self-contained and sent
-- with EVAL, so it never fails with NOSCRIPT.
-- KEYS: S, L, W, R, T. ARGV: max deliveries, lease ms, the consumer the
-- XREADGROUP used. Returns {how many of the read entries the caller keeps
-- (the first ones; at most n), how many were given back}.
local S, L, W, R, T = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local G = 'flextide'
local n, lease, want = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('GET', T)
if not t then return redis.error_reply('ERR the first half of the pop did not run') end
redis.call('DEL', T)
local before, k, C = string.match(t, '^(%S+) (%-?%d+) (%S+)$')
k = tonumber(k)
local keep = n - k
-- Redeliveries took part of the batch; a failed first half or a consumer
-- name gone stale (the group was re-created) keeps nothing.
if k < 0 or want ~= C then keep = 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if keep >= n then
  -- The usual case: all that was read is kept. It is the run of entries
  -- after `before` up to the group's last delivered id now.
  local after = before
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', S)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == G then after = last end
  end
  if after == before then return { 0, 0 } end
  redis.call('ZADD', R, now + lease, want .. ' (' .. before .. ' ' .. after)
  return { n, 0 }
end

-- Entries after `before` had never been delivered: those pending under
-- `want` are exactly what the XREADGROUP just read.
local fresh = redis.call('XPENDING', S, G, '(' .. before, '+', n, want)
keep = math.min(keep, #fresh)
if keep > 0 then
  redis.call('ZADD', R, now + lease, want .. ' ' .. fresh[1][1] .. ' ' .. fresh[keep][1])
end
if keep == #fresh then return { keep, 0 } end
-- Give the rest back: due at once under the consumer 'n' with count 0, as
-- if never delivered, keeping their place in the stream.
local claim, due = { 'XCLAIM', S, G, 'n', 0 }, {}
for i = keep + 1, #fresh do
  claim[#claim + 1] = fresh[i][1]
  due[#due + 1] = 0
  due[#due + 1] = fresh[i][1]
end
claim[#claim + 1] = 'RETRYCOUNT'
claim[#claim + 1] = 0
claim[#claim + 1] = 'JUSTID'
redis.call(unpack(claim))
redis.call('ZADD', L, unpack(due))
redis.call('XADD', W, 'MAXLEN', 1, '*', 'w', '1')
return { keep, #fresh - keep }
