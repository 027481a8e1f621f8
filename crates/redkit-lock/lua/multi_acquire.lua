-- KEYS[1..n] one lock key per resource of the group, KEYS[n+1] the group's fencing counter
-- ARGV[1] owner token, ARGV[2] ttl in milliseconds
-- Takes every resource or none: returns {1, fencing token}, or {0, remaining ttl in ms of
-- the first resource that another owner holds}.
local n = #KEYS - 1
for i = 1, n do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl ~= -2 then
    return {0, ttl}
  end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return {1, redis.call('INCR', KEYS[n + 1])}
