-- ARGV[3]: number of fields to set, then name, value pairs, then names to delete.
-- Only a live session is updated: a deleted or ended one stays gone. Fields not named are
-- left as they are, so concurrent saves of other fields both survive.
-- Reply: 1 when saved, 0 when the session is gone.
local touched, deadline = alive()
if not touched then return 0 end
local sets = tonumber(ARGV[3])
if sets > 0 then redis.call('HSET', key, unpack(ARGV, 4, 3 + 2 * sets)) end
if #ARGV >= 4 + 2 * sets then redis.call('HDEL', key, unpack(ARGV, 4 + 2 * sets)) end
extend(touched, deadline, false)
return 1
