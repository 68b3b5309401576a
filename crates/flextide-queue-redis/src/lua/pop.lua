-- ARGV: max deliveries, lease ms, max attempts (0: none), token nonce.
-- Returns {hint ms (-1: nothing scheduled), last id of S, last id of W, then
-- per delivery: id, fields, attempt, token}.
local n, lease, max_attempts, nonce = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now, ready, counts = tick(max_attempts)
local deadline = now + lease
local out = { 0, '', '' }
local count = 0
local toks, leases = {}, {}

local function deliver(id, fields, att)
  count = count + 1
  local tok = att .. '.' .. nonce .. count
  toks[#toks + 1] = id
  toks[#toks + 1] = tok
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id
  out[#out + 1] = id
  out[#out + 1] = fields
  out[#out + 1] = att
  out[#out + 1] = tok
end

-- Redeliveries first: their entries precede every entry not yet delivered.
local gone = {}
for _, id in ipairs(ready) do
  if count >= n then break end
  local r = redis.pcall('XCLAIM', S, G, C, 0, id)
  if type(r) == 'table' and r[1] and r[1][2] then
    deliver(id, r[1][2], counts[id] + 1)
  elseif type(r) == 'table' and r.err == nil then
    gone[#gone + 1] = id
  end
end
forget(gone)

if count < n then
  local r = redis.pcall('XREADGROUP', 'GROUP', G, C, 'COUNT', n - count, 'STREAMS', S, '>')
  if is_nogroup(r) then
    -- The group vanished (a restart without persistence, a FLUSHALL): make it
    -- again from the start of the stream, so messages pushed since are kept.
    ensure_group()
    r = redis.call('XREADGROUP', 'GROUP', G, C, 'COUNT', n - count, 'STREAMS', S, '>')
  elseif type(r) == 'table' and r.err then
    return redis.error_reply(r.err)
  end
  if r then
    for _, e in ipairs(r[1][2]) do
      local f = e[2]
      if f then
        if f[1] == 'a' then deliver(e[1], f, tonumber(f[2]) + 1) else deliver(e[1], f, 1) end
      end
    end
  end
end

if count > 0 then
  redis.call('HSET', K, unpack(toks))
  redis.call('ZADD', L, unpack(leases))
  return out
end

-- Nothing to deliver: tell the caller how long it may block and from where.
local hint = -1
local d = redis.call('ZRANGE', D, 0, 0, 'WITHSCORES')
if d[2] then hint = tonumber(d[2]) - now end
local l = redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')
if l[2] then
  local h = tonumber(l[2]) - now
  if hint < 0 or h < hint then hint = h end
end
if hint == 0 then hint = 1 end
out[1] = hint
out[2] = last_id(S)
out[3] = last_id(W)
return out
