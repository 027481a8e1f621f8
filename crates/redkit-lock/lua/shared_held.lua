-- KEYS[1] holders (sorted set: owner token -> expiry in server ms)
-- ARGV[1] owner token
-- Returns the ms left on a live shared hold, or -2 when it is not held.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  return -2
end
return tonumber(score) - now
