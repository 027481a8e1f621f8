-- KEYS[1]: a user's session index `<prefix>:sess:user:{<SHA-256 of the user id>}`: a
-- sorted set of session handles scored by their absolute deadline (ms). Every call first
-- drops entries whose deadline has passed, and the key expires with its last entry, so
-- the index never grows with ended sessions and needs no keyspace notifications.
-- ARGV[1]: operation:
--   'add' handle absolute-ms limit policy dead...  adds the handle with deadline now +
--        absolute, drops the dead handles, then over `limit` (0 = none) either refuses
--        (policy 'r': reply {-1}) or removes the oldest others (policy 'e').
--        Reply: {deadline, evicted handle...}
--   'remove' handle...   Reply: how many were there.
--   'list'               Reply: handle, deadline pairs, oldest first.
--   'take' keep          removes and returns every handle but `keep`.
local key = KEYS[1]
local op = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)

local function settle()
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, last[2]) end
end

if op == 'add' then
  local handle, limit = ARGV[2], tonumber(ARGV[4])
  for i = 6, #ARGV do redis.call('ZREM', key, ARGV[i]) end
  if limit > 0 and ARGV[5] == 'r' and not redis.call('ZSCORE', key, handle)
      and redis.call('ZCARD', key) >= limit then
    return { -1 }
  end
  local deadline = now + tonumber(ARGV[3])
  redis.call('ZADD', key, deadline, handle)
  local out = { deadline }
  if limit > 0 then
    local over = redis.call('ZCARD', key) - limit
    if over > 0 then
      -- the oldest, never the session being added (equal deadlines can rank it first)
      for _, h in ipairs(redis.call('ZRANGE', key, 0, over)) do
        if h ~= handle and #out <= over then out[#out + 1] = h end
      end
      redis.call('ZREM', key, unpack(out, 2))
    end
  end
  settle()
  return out
end

if op == 'remove' then
  local n = redis.call('ZREM', key, unpack(ARGV, 2))
  settle()
  return n
end

if op == 'list' then
  return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
end

-- 'take'
local out = {}
for _, handle in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  if handle ~= ARGV[2] then out[#out + 1] = handle end
end
if #out > 0 then redis.call('ZREM', key, unpack(out)) end
settle()
return out
