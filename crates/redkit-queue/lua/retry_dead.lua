-- KEYS[1]: jobs, KEYS[2]: dead, KEYS[3]: errors, KEYS[4]: signal, KEYS[5]: progress,
-- KEYS[6..9]: ready lists by level; `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: most jobs, then ids (none: the oldest dead jobs).
-- Gives dead jobs a new life: attempts and stalls back to 0, error and progress cleared,
-- to the tail of their ready list. Reply: how many.
local ids = {}
if #ARGV > 1 then
  for i = 2, math.min(#ARGV, tonumber(ARGV[1]) + 1) do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
local back = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[2], id) == 1 then
    local env = redis.call('HGET', KEYS[1], id)
    if env then
      env = string.sub(env, 1, 1) .. struct.pack('>I2I2', 0, 0) .. string.sub(env, 6)
      redis.call('HSET', KEYS[1], id, env)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[5], id)
      redis.call('RPUSH', KEYS[6 + string.byte(env, 8)], id)
      back = back + 1
    end
  end
end
if back > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], 1) end
return back
