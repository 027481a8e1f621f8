-- Deletes the session. Reply: {deleted (0/1), user or false}, so the caller can drop the
-- session from its user's index.
local user = redis.call('HGET', key, '_u')
return { redis.call('DEL', key), user }
