-- KEYS[1]: an entry, KEYS[2]: its fill markers (a set of load tokens), KEYS[3]: its load
-- lock; one hash tag.
-- ARGV[1]: the load's token, ARGV[2]: '1' when the load holds the lock, ARGV[3]: value,
-- ARGV[4]: ttl ms, ARGV[5]: channel, ARGV[6]: message ('' = none).
-- A load registers its token in the markers when it begins (begin.lua); every set,
-- delete and write-behind change of the entry deletes the markers. So the token is still
-- there only if nothing was written or deleted since the load began, whatever the
-- entries' headers say (a delete leaves no entry to compare; two writes in one
-- millisecond can have equal headers). The value is written only then, and only while a
-- load holding the lock still holds it (a loader that outlived its lock must not
-- overwrite newer data). Everything is checked before the first write. Releases the
-- token and the lock either way and announces a write.
-- Reply: 1 written, 0 the lock was lost, 2 written or deleted since the load began.
local locked = ARGV[2] == '1'
local lost = locked and redis.call('GET', KEYS[3]) ~= ARGV[1]
local ours = redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1
if not lost and ours then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
if ours then redis.call('SREM', KEYS[2], ARGV[1]) end
if locked and not lost then redis.call('DEL', KEYS[3]) end
if lost then return 0 end
if not ours then return 2 end
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return 1
