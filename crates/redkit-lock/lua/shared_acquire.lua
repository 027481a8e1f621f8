-- KEYS[1] writer key (a string with the writer's token; never set for semaphores)
-- KEYS[2] holders (sorted set: owner token -> expiry in server ms)
-- KEYS[3] fencing counter (never expires)
-- KEYS[4] waiting writers (sorted set: token -> expiry of that writer's intent in server
-- ms; none for semaphores)
-- ARGV[1] owner token, ARGV[2] ttl in ms, ARGV[3] most holders at once (0: no limit)
-- Takes a shared hold (a reader, or one permit of a semaphore) on server time. Returns
-- {1, fencing token}, {0, ms to wait} when a writer holds the resource, a writer waits
-- for it (writer preference), or every permit is taken, or {-1, 2} when the fencing
-- counter cannot be incremented. Only expired entries are removed before that check
-- (a wrong type of the holders or waiting set fails the script before any other write);
-- the counter is incremented (under pcall) before the hold is written, so a failure
-- leaves nothing held.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local writer_ttl = redis.call('PTTL', KEYS[1])
if writer_ttl > 0 or writer_ttl == -1 then
  return {0, writer_ttl}
end
-- every waiting writer's intent has its own expiry: the latest one still standing counts
local waiting = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if waiting[2] and tonumber(waiting[2]) > now then
  return {0, tonumber(waiting[2]) - now}
end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(first[2]) - now)}
end
local token = redis.pcall('INCR', KEYS[3])
if type(token) == 'table' then
  return {-1, 2}
end
local expires = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[2], math.max(1, tonumber(last[2]) - now))
return {1, token}
