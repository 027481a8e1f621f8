-- KEYS[1..n] one lock key per resource of the group, KEYS[n+1] the group's fencing counter
-- ARGV[1] owner token, ARGV[2] ttl in milliseconds
-- Takes every resource or none: returns {1, fencing token}, {0, remaining ttl in ms of
-- the first resource that another owner holds}, or {-1, reason} with nothing written
-- (1: a lock key holds another type; 2: the fencing counter cannot be incremented). The
-- counter is incremented (under pcall) before the first lock key is set, so a counter
-- that fails leaves nothing behind.
local n = #KEYS - 1
for i = 1, n do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl ~= -2 then
    if ttl == -1 and redis.call('TYPE', KEYS[i]).ok ~= 'string' then
      return {-1, 1}
    end
    return {0, ttl}
  end
end
local token = redis.pcall('INCR', KEYS[n + 1])
if type(token) == 'table' then
  return {-1, 2}
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return {1, token}
