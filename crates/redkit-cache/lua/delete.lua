-- KEYS[1..n]: entries of one slot. ARGV[1]: channel, ARGV[2]: message.
-- Deletes the entries and publishes their invalidation in one step. Reply: how many existed.
local n = redis.call('DEL', unpack(KEYS))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
