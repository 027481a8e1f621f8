-- KEYS[1] lock key
-- ARGV[1] owner token
-- Returns the remaining ttl in ms while ARGV[1] owns the lock, or -2 when it does not.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -2
