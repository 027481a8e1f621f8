-- KEYS[1]: jobs, KEYS[2]: delayed, KEYS[3]: lease, KEYS[4]: dead, KEYS[5]: completed,
-- KEYS[6]: results, KEYS[7]: errors, KEYS[8]:
-- progress; `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: id.
-- A job's state, envelope, last error, result and progress in one read.
-- Reply: {} for no such job, else {state, envelope, error or false, result or false,
-- progress or false}.
local id = ARGV[1]
local env = redis.call('HGET', KEYS[1], id)
if not env then return {} end
local err = redis.call('HGET', KEYS[7], id)
local state = 'waiting'
if redis.call('ZSCORE', KEYS[3], id) then
  state = 'active'
elseif redis.call('ZSCORE', KEYS[4], id) then
  state = 'dead'
elseif redis.call('ZSCORE', KEYS[5], id) then
  state = 'completed'
elseif redis.call('ZSCORE', KEYS[2], string.byte(env, 8) .. id) then
  if err then state = 'failed' else state = 'delayed' end
elseif err then
  state = 'failed'
end
return {state, env, err, redis.call('HGET', KEYS[6], id), redis.call('HGET', KEYS[8], id)}
