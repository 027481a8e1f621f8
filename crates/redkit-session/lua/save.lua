-- KEYS[1]: the session hash, ARGV[1..2]: idle and touch interval (see common.lua,
-- which precedes this file in the script).
-- ARGV[3]: '1' to extend the idle timeout as well, ARGV[4]: number of fields to set,
-- then name, value pairs, then names to delete.
-- Only an existing session is updated (Redis ends sessions by the key's expiry): a
-- deleted or ended one stays gone. Fields not named are left as they are, so concurrent
-- saves of other fields both survive.
-- A session marked `_r` is moving to a new id (freeze.lua): the save fails like one of
-- a session that is gone, rather than write what the move would not carry over.
-- Reply: 1 when saved, 0 when the session is gone.
if redis.call('EXISTS', key) == 0 or redis.call('HEXISTS', key, '_r') == 1 then return 0 end
local sets = tonumber(ARGV[4])
if sets > 0 then redis.call('HSET', key, unpack(ARGV, 5, 4 + 2 * sets)) end
if #ARGV >= 5 + 2 * sets then redis.call('HDEL', key, unpack(ARGV, 5 + 2 * sets)) end
if ARGV[3] == '1' then
  local touched, deadline = alive()
  if not touched then return 0 end
  extend(touched, deadline, true)
end
return 1
