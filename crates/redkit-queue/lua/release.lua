-- KEYS[1]: jobs, KEYS[2]: lease, KEYS[3]: inflight, KEYS[4]: signal, KEYS[5..8]: ready
-- lists by level; `<prefix>:queue:{<name>}:…`.
-- ARGV: id, token pairs.
-- Hands jobs back (a worker shutting down before it ran them): those whose token still
-- holds go to the head of their ready list, no attempt counted. Reply: how many.
local back = 0
for i = 1, #ARGV - 1, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    local env = redis.call('HGET', KEYS[1], id)
    if env then
      redis.call('LPUSH', KEYS[5 + string.byte(env, 8)], id)
      back = back + 1
    end
  end
end
if back > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], 1) end
return back
