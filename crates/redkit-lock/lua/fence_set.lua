-- KEYS[1] protected value (a hash with fields token and value)
-- KEYS[2] the resource's fencing counter (the one the acquire scripts INCR; same slot)
-- ARGV[1] fencing token of the writer (decimal), ARGV[2] new value
-- Writes only while ARGV[1] is the highest token issued for the resource, i.e. the
-- counter's value: once a later holder has acquired the lock, an earlier holder's write
-- is refused even if the later holder has not written yet, so a read-modify-write under
-- the lock cannot lose an update. The same holder may write several times. Tokens are
-- compared as decimal strings (length, then digits), exact over the whole range.
-- Returns 1 when written, 0 when refused because a later holder exists, -1 when refused
-- because the counter is behind the token or the stored value's token (the counter was
-- lost: evicted, or a restart or failover without it); the counter is then raised one
-- past the larger of the two, so no token seen here (the writer's own, whose holder may
-- have expired, or the stored one's) is ever the highest issued again, and the next
-- acquisition's token is above all of them. At the largest integer the counter is set to
-- one past it as a string: every write is refused and acquisitions answer that the
-- counter cannot be incremented.
local function less(a, b)
  return #a < #b or (#a == #b and a < b)
end
local token = ARGV[1]
if not string.match(token, '^[1-9]%d*$') then
  return redis.error_reply('ERR fencing token must be a positive integer')
end
local issued = redis.call('GET', KEYS[2]) or '0'
if not string.match(issued, '^%d+$') then
  return redis.error_reply('ERR the fencing counter is not a non-negative integer')
end
local seen = redis.call('HGET', KEYS[1], 'token') or '0'
if less(token, issued) then
  return 0
end
if less(issued, token) or less(issued, seen) then
  local top = token
  if less(token, seen) then
    top = seen
  end
  redis.call('SET', KEYS[2], top)
  if type(redis.pcall('INCR', KEYS[2])) == 'table' then
    redis.call('SET', KEYS[2], '9223372036854775808')
  end
  return -1
end
redis.call('HSET', KEYS[1], 'token', token, 'value', ARGV[2])
return 1
