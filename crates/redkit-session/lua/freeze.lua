-- KEYS[1]: the session hash, ARGV[1..2]: idle and touch interval (see common.lua,
-- which precedes this file in the script).
-- Reads a session that is about to move to a new id (rotate, login) and marks it with
-- `_r`, so that from now on a save through the old id fails (save.lua) instead of
-- writing a change the move would not carry over. A move that fails removes the mark
-- ('thaw'; on a session that is gone it writes nothing).
-- ARGV[3]: 'freeze' or 'thaw'.
-- Reply (freeze): the fields as name, value pairs, or false when the session is gone.
if ARGV[3] == 'thaw' then
  return redis.call('HDEL', key, '_r')
end
local touched = alive()
if not touched then return false end
redis.call('HSET', key, '_r', 1)
return redis.call('HGETALL', key)
