-- KEYS[1]: a write-behind shard's flush lease `<log>:owner`. ARGV[1]: token, ARGV[2]: ttl
-- ms, ARGV[3]: 'take' (take the lease if it is free, renew it if the token holds it) or
-- 'renew' (renew only: a flusher about to call its writer must not take back a lease it
-- lost, since its records may have been flushed by the next owner meanwhile).
-- Reply: 1 held by the token, 0 not.
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] or (owner == false and ARGV[3] == 'take') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
