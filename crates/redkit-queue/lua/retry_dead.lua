-- KEYS[1]: jobs, KEYS[2]: dead, KEYS[3]: errors, KEYS[4]: signal, KEYS[5]: progress,
-- KEYS[6..9]: ready lists by level, KEYS[10]: uniques (hash unique key -> holder id);
-- `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: most jobs, then ids (none: the oldest dead jobs).
-- Gives dead jobs a new life: attempts and stalls back to 0, error and progress cleared,
-- to the tail of their ready list; a job takes its unique key (until finished) again if
-- no job holds it. Stored data that is not a job stays dead. Every key's type is checked
-- before the first write. Reply: how many.
local types = {'hash', 'zset', 'hash', 'list', 'hash', 'list', 'list', 'list', 'list', 'hash'}
for i, want in ipairs(types) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local ids = {}
if #ARGV > 1 then
  for i = 2, math.min(#ARGV, tonumber(ARGV[1]) + 1) do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
local back = 0
for _, id in ipairs(ids) do
  local env = redis.call('HGET', KEYS[1], id)
  if env and #env >= 33 and string.byte(env, 1) == 1 and string.byte(env, 8) <= 3
    and redis.call('ZREM', KEYS[2], id) == 1 then
    env = string.sub(env, 1, 1) .. struct.pack('>I2I2', 0, 0) .. string.sub(env, 6)
    redis.call('HSET', KEYS[1], id, env)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('RPUSH', KEYS[6 + string.byte(env, 8)], id)
    if string.byte(env, 31) == 1 then
      redis.call('HSETNX', KEYS[10], string.sub(env, 34, 33 + struct.unpack('>I2', env, 32)), id)
    end
    back = back + 1
  end
end
if back > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], 1) end
return back
