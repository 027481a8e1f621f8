-- KEYS[1] holders (sorted set: owner token -> expiry in server ms)
-- ARGV[1] owner token, ARGV[2] channel that waiters listen on
-- Drops a live shared hold and wakes waiters; returns 1, or 0 when it had expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(score) <= now then
  return 0
end
redis.call('PUBLISH', ARGV[2], 'released')
return 1
