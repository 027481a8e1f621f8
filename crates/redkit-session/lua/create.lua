-- KEYS[1]: the session hash, ARGV[1..2]: idle and touch interval (see common.lua,
-- which precedes this file in the script).
-- ARGV[3]: absolute timeout ms, ARGV[4]: created ms ('' = now), ARGV[5]: deadline ms
-- ('' = now + absolute), then field name, value pairs.
-- Creates the session only if the key is free (an id is never reused or overwritten).
-- Reply: {created, touched, deadline}; -1 when the key exists; 0 when the given deadline
-- has already passed.
if redis.call('EXISTS', key) == 1 then return -1 end
local created = ARGV[4] ~= '' and tonumber(ARGV[4]) or now()
local deadline = ARGV[5] ~= '' and tonumber(ARGV[5]) or now() + tonumber(ARGV[3])
if deadline <= now() then return 0 end
redis.call('HSET', key, '_c', created, '_t', now(), '_x', deadline)
if #ARGV >= 6 then redis.call('HSET', key, unpack(ARGV, 6)) end
redis.call('PEXPIREAT', key, math.min(now() + idle, deadline))
return { created, now(), deadline }
