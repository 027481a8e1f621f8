-- KEYS[1] lock key
-- ARGV[1] owner token, ARGV[2] new ttl in milliseconds
-- Resets the ttl only while ARGV[1] still owns the lock. Returns 1, or 0 when not held.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
