-- KEYS[1]: jobs, KEYS[2]: lease, KEYS[3]: inflight, KEYS[4]: delayed, KEYS[5]: dead,
-- KEYS[6]: errors, KEYS[7]: signal, KEYS[8]: events, KEYS[9..12]: ready lists by level,
-- KEYS[13]: uniques (hash unique key -> holder id), KEYS[14]: progress; all
-- `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: id, ARGV[2]: token, ARGV[3]: error, ARGV[4]: 'retry' or 'dead', ARGV[5]:
-- retry delay ms, ARGV[6]: most dead jobs kept (0 = no limit, -1 = none: a dead job is
-- deleted), ARGV[7]: most trimmed per call, ARGV[8]: events max length (0 = none).
-- Records a failed attempt of a job whose delivery token still holds: counts it in the
-- envelope, keeps the error, and schedules the retry after the delay (ready at once for
-- no delay) or moves the job to the dead set (trimmed, bounded) and gives back the
-- unique key it holds until it finishes (if it still names the job). Stored data that
-- is not a job goes to the dead set as it is. Every key's type is checked before the
-- first write: an error leaves the queue as it was. Reply: 1, or 0 when the lease was
-- lost.
local types = {'hash', 'zset', 'hash', 'zset', 'zset', 'hash', 'list', 'stream', 'list',
  'list', 'list', 'list', 'hash', 'hash'}
for i, want in ipairs(types) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local id = ARGV[1]
if redis.call('HGET', KEYS[3], id) ~= ARGV[2] then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
local env = redis.call('HGET', KEYS[1], id)
if not env then return 1 end
local is_job = #env >= 33 and string.byte(env, 1) == 1 and string.byte(env, 8) <= 3
local retry = ARGV[4] == 'retry' and is_job
if is_job then
  local attempts = struct.unpack('>I2', env, 2) + 1
  env = string.sub(env, 1, 1) .. struct.pack('>I2', attempts) .. string.sub(env, 4)
  redis.call('HSET', KEYS[1], id, env)
end
redis.call('HSET', KEYS[6], id, ARGV[3])
local events = tonumber(ARGV[8])
local kind = 'failed'
if retry then
  local level = string.byte(env, 8)
  local delay = tonumber(ARGV[5])
  if delay > 0 then
    redis.call('ZADD', KEYS[4], now + delay, level .. id)
  else
    redis.call('RPUSH', KEYS[9 + level], id)
    if redis.call('LLEN', KEYS[7]) == 0 then redis.call('RPUSH', KEYS[7], 1) end
  end
else
  kind = 'dead'
  if is_job and string.byte(env, 31) == 1 then
    local key = string.sub(env, 34, 33 + struct.unpack('>I2', env, 32))
    if redis.call('HGET', KEYS[13], key) == id then redis.call('HDEL', KEYS[13], key) end
  end
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
