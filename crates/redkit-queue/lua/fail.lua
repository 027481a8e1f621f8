-- KEYS[1]: jobs, KEYS[2]: lease, KEYS[3]: inflight, KEYS[4]: delayed, KEYS[5]: dead,
-- KEYS[6]: errors, KEYS[7]: signal, KEYS[8]: events, KEYS[9..12]: ready lists by level,
-- KEYS[13]: the job's unique key (or the jobs key when it has none), KEYS[14]: progress;
-- all `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: id, ARGV[2]: token, ARGV[3]: error, ARGV[4]: 'retry' or 'dead', ARGV[5]:
-- retry delay ms, ARGV[6]: most dead jobs kept (0 = no limit, -1 = none: a dead job is deleted), ARGV[7]: most trimmed per
-- call, ARGV[8]: events max length (0 = none), ARGV[9]: '1' when KEYS[13] is a unique key.
-- Records a failed attempt of a job whose delivery token still holds: counts it in the
-- envelope, keeps the error, and schedules the retry after the delay (ready at once for
-- no delay) or moves the job to the dead set (trimmed, bounded). Reply: 1, or 0 when
-- the lease was lost.
local id = ARGV[1]
if redis.call('HGET', KEYS[3], id) ~= ARGV[2] then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
local env = redis.call('HGET', KEYS[1], id)
if not env then return 1 end
local attempts = struct.unpack('>I2', env, 2) + 1
env = string.sub(env, 1, 1) .. struct.pack('>I2', attempts) .. string.sub(env, 4)
redis.call('HSET', KEYS[1], id, env)
redis.call('HSET', KEYS[6], id, ARGV[3])
local level = string.byte(env, 8)
local events = tonumber(ARGV[8])
local kind = 'failed'
if ARGV[4] == 'retry' then
  local delay = tonumber(ARGV[5])
  if delay > 0 then
    redis.call('ZADD', KEYS[4], now + delay, level .. id)
  else
    redis.call('RPUSH', KEYS[9 + level], id)
    if redis.call('LLEN', KEYS[7]) == 0 then redis.call('RPUSH', KEYS[7], 1) end
  end
else
  kind = 'dead'
  if ARGV[9] == '1' and redis.call('GET', KEYS[13]) == id then redis.call('DEL', KEYS[13]) end
  local most = tonumber(ARGV[6])
  if most < 0 then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('HDEL', KEYS[14], id)
  else
    redis.call('ZADD', KEYS[5], now, id)
  end
  if most > 0 then
    local excess = redis.call('ZCARD', KEYS[5]) - most
    if excess > 0 then
      local old = redis.call('ZRANGE', KEYS[5], 0, math.min(excess, tonumber(ARGV[7])) - 1)
      redis.call('ZREM', KEYS[5], unpack(old))
      redis.call('HDEL', KEYS[1], unpack(old))
      redis.call('HDEL', KEYS[6], unpack(old))
      redis.call('HDEL', KEYS[14], unpack(old))
    end
  end
end
if events > 0 then
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', events, '*', 'event', kind, 'id', id,
    'detail', ARGV[3])
end
return 1
