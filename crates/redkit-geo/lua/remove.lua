-- KEYS[1]: the index's sorted set, KEYS[2]: its metadata hash (one hash tag).
-- ARGV: place ids. Removes the places and their metadata together, so no metadata is
-- left without its place. Reply: how many places were there.
local removed = redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return removed
