-- KEYS[1] protected value (a hash with fields token and value)
-- ARGV[1] fencing token of the writer (decimal u64), ARGV[2] new value
-- Writes only if the token is higher than every token seen before: a holder whose lock
-- expired (and whose token is lower than the next holder's) is rejected. Tokens are
-- compared as decimal strings (length, then digits), exact for the whole u64 range.
-- Returns 1 when written, 0 when rejected as stale.
local token = ARGV[1]
if not string.match(token, '^[1-9]%d*$') then
  return redis.error_reply('ERR fencing token must be a positive integer')
end
local seen = redis.call('HGET', KEYS[1], 'token') or '0'
if #token < #seen or (#token == #seen and token <= seen) then
  return 0
end
redis.call('HSET', KEYS[1], 'token', token, 'value', ARGV[2])
return 1
