-- KEYS[1] lock key (holds the owner token), KEYS[2] fencing counter (never expires)
-- ARGV[1] owner token, ARGV[2] ttl in milliseconds
-- Takes the lock if it is free. Returns {1, fencing token} on success, {0, remaining ttl
-- in ms} when another owner holds it, or {-1, reason} when a key holds something this
-- script did not write (reason 1: the lock key is not a string; 2: the fencing counter
-- cannot be incremented: another type, not an integer, or at its maximum). Nothing is
-- left held then: the counter's INCR runs under pcall and a failure deletes the lock
-- key this call just set (it did not exist before). Expiry runs on server time (PX).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local n = redis.pcall('INCR', KEYS[2])
  if type(n) == 'table' then
    redis.call('DEL', KEYS[1])
    return {-1, 2}
  end
  return {1, n}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 and redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return {-1, 1}
end
return {0, ttl}
