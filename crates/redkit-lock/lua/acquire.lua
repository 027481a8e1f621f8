-- KEYS[1] lock key (holds the owner token), KEYS[2] fencing counter (never expires)
-- ARGV[1] owner token, ARGV[2] ttl in milliseconds
-- Takes the lock if it is free. Returns {1, fencing token} on success, or
-- {0, remaining ttl in ms} when another owner holds it. Expiry runs on server time (PX).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
