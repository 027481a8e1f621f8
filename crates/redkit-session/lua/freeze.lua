-- KEYS[1]: the session hash, ARGV[1..2]: idle and touch interval (see common.lua,
-- which precedes this file in the script).
-- Reads a session that is about to move to a new id (rotate, login) and marks it with
-- `_r`, so that from now on a save through the old id fails (save.lua) instead of
-- writing a change the move would not carry over. A move that fails removes its marks
-- ('thaw'; on a session that is gone it writes nothing).
-- The mark counts the moves under way, so that one that fails does not unmark the
-- session while another one is still copying it.
-- ARGV[3]: 'freeze' or 'thaw', ARGV[4] (thaw): how many marks the failed move made.
-- Reply (freeze): the fields as name, value pairs, or false when the session is gone.
if ARGV[3] == 'thaw' then
  if redis.call('EXISTS', key) == 0 then return 0 end
  if redis.call('HINCRBY', key, '_r', -tonumber(ARGV[4])) <= 0 then
    redis.call('HDEL', key, '_r')
  end
  return 1
end
local touched = alive()
if not touched then return false end
redis.call('HINCRBY', key, '_r', 1)
return redis.call('HGETALL', key)
