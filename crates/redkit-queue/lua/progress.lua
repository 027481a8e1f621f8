-- KEYS[1]: jobs, KEYS[2]: inflight, KEYS[3]: progress (hash id -> last report), KEYS[4]:
-- events; all `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: id, ARGV[2]: delivery token, ARGV[3]: the report, ARGV[4]: events max length
-- (0 = none).
-- Records a running job's progress while its delivery token holds (a worker whose lease
-- was lost cannot report for the job's next run). Every key's type is checked before the
-- first write. Reply: 1, or 0 when the lease was lost.
local types = {'hash', 'hash', 'hash', 'stream'}
for i, want in ipairs(types) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local id = ARGV[1]
if redis.call('HGET', KEYS[2], id) ~= ARGV[2] or redis.call('HEXISTS', KEYS[1], id) == 0 then
  return 0
end
redis.call('HSET', KEYS[3], id, ARGV[3])
local events = tonumber(ARGV[4])
if events > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', events, '*', 'event', 'progress', 'id', id,
    'detail', ARGV[3])
end
return 1
