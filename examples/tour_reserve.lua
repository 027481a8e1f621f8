-- KEYS[1] stock counter, KEYS[2] ledger list
-- ARGV[1] buyer
-- Takes one unit if any is left and records the buyer; returns units left, or -1.
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then
  return -1
end
redis.call('DECR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return left - 1
