-- KEYS[1]: a write-behind shard's flush lease `<log>:owner`. ARGV[1]: token, ARGV[2]: ttl
-- ms. Takes the lease if it is free, renews it if the token holds it.
-- Reply: 1 held by the token, 0 held by another flusher.
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
