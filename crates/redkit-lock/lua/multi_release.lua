-- KEYS[1..n] the lock keys of the held resources
-- ARGV[1] owner token, ARGV[2] channel that waiters listen on
-- Deletes the resources ARGV[1] still owns (never another owner's) and wakes waiters.
-- Returns 1 when it owned all of them, 0 otherwise. A key holding another type is not
-- owned: its GET runs under pcall, so the rest are still released.
local owned = 0
for i = 1, #KEYS do
  if redis.pcall('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    owned = owned + 1
  end
end
if owned > 0 then
  redis.call('PUBLISH', ARGV[2], 'released')
end
if owned == #KEYS then
  return 1
end
return 0
