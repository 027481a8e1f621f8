-- KEYS[1]: jobs, KEYS[2]: delayed, KEYS[3]: lease, KEYS[4]: inflight, KEYS[5]: dead,
-- KEYS[6]: completed, KEYS[7]: results, KEYS[8]: errors, KEYS[9]: progress; `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: id.
-- Removes a job in whatever state. Its id may stay in a ready list, where fetch skips it
-- (no O(n) list scan); a worker running it can no longer complete or fail it.
-- Reply: 1 removed, 0 no such job.
local id = ARGV[1]
local env = redis.call('HGET', KEYS[1], id)
if not env then return 0 end
redis.call('ZREM', KEYS[2], string.byte(env, 8) .. id)
for k = 3, 6 do
  if k == 4 then redis.call('HDEL', KEYS[4], id) else redis.call('ZREM', KEYS[k], id) end
end
redis.call('HDEL', KEYS[7], id)
redis.call('HDEL', KEYS[8], id)
redis.call('HDEL', KEYS[9], id)
redis.call('HDEL', KEYS[1], id)
return 1
