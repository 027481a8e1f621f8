-- KEYS[1]: jobs, KEYS[2]: lease, KEYS[3]: inflight, KEYS[4]: signal, KEYS[5..8]: ready
-- lists by level; `<prefix>:queue:{<name>}:…`.
-- ARGV: id, token pairs.
-- Hands jobs back (a worker shutting down before it ran them): those whose token still
-- holds go to the head of their ready list, no attempt counted (stored data that is not
-- a job stays leased: its lease runs out and it goes to the dead set). Every key's type
-- is checked before the first write. Reply: how many.
local types = {'hash', 'zset', 'hash', 'list', 'list', 'list', 'list', 'list'}
for i, want in ipairs(types) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local back = 0
for i = 1, #ARGV - 1, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    local env = redis.call('HGET', KEYS[1], id)
    if not env then
      redis.call('ZREM', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
    elseif #env >= 33 and string.byte(env, 1) == 1 and string.byte(env, 8) <= 3 then
      redis.call('ZREM', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('LPUSH', KEYS[5 + string.byte(env, 8)], id)
      back = back + 1
    end
  end
end
if back > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], 1) end
return back
