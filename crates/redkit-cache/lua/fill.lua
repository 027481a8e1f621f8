-- KEYS[1]: an entry, KEYS[2]: its load lock `<entry>:lock` (same hash tag).
-- ARGV[1]: lock token, ARGV[2]: value, ARGV[3]: ttl ms, ARGV[4]: channel, ARGV[5]: message.
-- Writes a loaded value only while the loader still holds the lock (a loader that
-- outlived its lock must not overwrite newer data), releases the lock, announces it.
-- Reply: 1 written, 0 the lock was lost.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
