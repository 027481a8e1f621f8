-- KEYS[1] writer key, KEYS[2] readers (sorted set: token -> expiry in server ms),
-- KEYS[3] fencing counter (never expires)
-- ARGV[1] owner token, ARGV[2] ttl in ms
-- Takes the exclusive (write) side when no live reader and no writer holds the resource.
-- Returns {1, fencing token}, or {0, ms until the blocking holder expires}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] then
  return {0, math.max(1, tonumber(last[2]) - now)}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[3])}
end
return {0, redis.call('PTTL', KEYS[1])}
