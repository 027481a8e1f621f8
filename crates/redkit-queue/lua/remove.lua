-- KEYS[1]: jobs, KEYS[2]: delayed, KEYS[3]: lease, KEYS[4]: inflight, KEYS[5]: dead,
-- KEYS[6]: completed, KEYS[7]: results, KEYS[8]: errors, KEYS[9]: progress, KEYS[10]:
-- uniques (hash unique key -> holder id), KEYS[11]: removed (hash id -> levels of ready
-- lists still holding a removed job's id), KEYS[12..15]: ready lists by level;
-- `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: id.
-- Removes a job in whatever state, with what it left (result, error, progress, the
-- unique key it holds until it finishes if that still names it). A waiting job's id
-- stays in its ready list (no O(n) list scan): its level is recorded in `removed`, and
-- the fetch that meets that place in line skips it once — so the same id enqueued again
-- is delivered once, at its own place. A worker running it can no longer complete or
-- fail it. Stored data that is not a job has no level to record: its delayed entry and
-- its places in line
-- (and any removed places of its id) are taken out of every ready list, so no place is
-- left from which the id enqueued again would be handed out a second time. Every key's
-- type is checked before the first write.
-- Reply: 1 removed, 0 no such job.
local types = {'hash', 'zset', 'zset', 'hash', 'zset', 'zset', 'hash', 'hash', 'hash',
  'hash', 'hash', 'list', 'list', 'list', 'list'}
for i, want in ipairs(types) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local id = ARGV[1]
local env = redis.call('HGET', KEYS[1], id)
if not env then return 0 end
local is_job = #env >= 33 and string.byte(env, 1) == 1 and string.byte(env, 8) <= 3
local waiting = true
for level = 0, 3 do
  -- a job's delayed entry is under its level; stored data that is not a job may be
  -- under any
  if (not is_job or level == string.byte(env, 8))
    and redis.call('ZREM', KEYS[2], level .. id) == 1 then
    waiting = false
  end
end
for _, k in ipairs({3, 5, 6}) do
  if redis.call('ZREM', KEYS[k], id) == 1 then waiting = false end
end
redis.call('HDEL', KEYS[4], id)
if waiting and is_job then
  local levels = redis.call('HGET', KEYS[11], id) or ''
  redis.call('HSET', KEYS[11], id, levels .. string.byte(env, 8))
elseif waiting then
  for level = 0, 3 do redis.call('LREM', KEYS[12 + level], 0, id) end
  redis.call('HDEL', KEYS[11], id)
end
if is_job and string.byte(env, 31) == 1 then
  local key = string.sub(env, 34, 33 + struct.unpack('>I2', env, 32))
  if redis.call('HGET', KEYS[10], key) == id then redis.call('HDEL', KEYS[10], key) end
end
redis.call('HDEL', KEYS[7], id)
redis.call('HDEL', KEYS[8], id)
redis.call('HDEL', KEYS[9], id)
redis.call('HDEL', KEYS[1], id)
return 1
