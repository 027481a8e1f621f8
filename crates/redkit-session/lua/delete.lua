-- KEYS[1]: the session hash, ARGV[1..2]: idle and touch interval (see common.lua,
-- which precedes this file in the script).
-- Deletes the session. Reply: {deleted (0/1), user or false}, so the caller can drop the
-- session from its user's index.
local user = redis.call('HGET', key, '_u')
return { redis.call('DEL', key), user }
