-- KEYS[1] lock key
-- ARGV[1] owner token, ARGV[2] channel that waiters listen on
-- Deletes the lock only while ARGV[1] owns it, then wakes waiters. Returns 1, or 0 when
-- the lock had expired or belongs to someone else (nothing is deleted then).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
