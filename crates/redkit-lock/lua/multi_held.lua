-- KEYS[1..n] the lock keys of the held resources
-- ARGV[1] owner token
-- Returns the smallest remaining ttl in ms while ARGV[1] owns every resource, else -2.
local least = -2
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return -2
  end
  local ttl = redis.call('PTTL', KEYS[i])
  if least == -2 or ttl < least then
    least = ttl
  end
end
return least
