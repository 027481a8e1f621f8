-- KEYS[1..n] the lock keys of the held resources
-- ARGV[1] owner token, ARGV[2] new ttl in milliseconds
-- Renews every resource while ARGV[1] still owns all of them. Returns 1, or 0 (nothing
-- renewed) when any of them expired or belongs to someone else.
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
