-- KEYS[1] writer key, KEYS[2] readers (sorted set: token -> expiry in server ms),
-- KEYS[3] fencing counter (never expires), KEYS[4] waiting writers (sorted set: token ->
-- expiry of that writer's intent in server ms)
-- ARGV[1] owner token, ARGV[2] ttl in ms, ARGV[3] intent in ms (0: a single attempt that
-- does not wait, so it records no intent)
-- Takes the exclusive (write) side when no live reader and no writer holds the resource.
-- A writer that will wait records its intent, which keeps new readers out (writer
-- preference); taking the lock clears it. Returns {1, fencing token}, {0, ms until the
-- blocking holder expires}, or {-1, reason} with nothing held (1: the writer key holds
-- another type; 2: the fencing counter cannot be incremented).
--
-- Each intent keeps its own expiry as its score: expired intents are removed on the
-- server clock, and the set's key lives as long as its latest intent, so one writer's
-- short intent never cuts another's longer one short.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local intent = tonumber(ARGV[3])
local function busy(ms)
  if intent > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    redis.call('ZADD', KEYS[4], now + intent, ARGV[1])
    local latest = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', KEYS[4], math.max(1, tonumber(latest[2]) - now))
  end
  return {0, ms}
end
-- validate before the first write: a wrong type at the waiting set fails here (ZCARD is
-- a read), not at the ZREM after the writer key was set and the counter incremented
redis.call('ZCARD', KEYS[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] then
  return busy(math.max(1, tonumber(last[2]) - now))
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local n = redis.pcall('INCR', KEYS[3])
  if type(n) == 'table' then
    -- the writer key did not exist before this SET: deleting it undoes the hold
    redis.call('DEL', KEYS[1])
    return {-1, 2}
  end
  redis.call('ZREM', KEYS[4], ARGV[1])
  return {1, n}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 and redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return {-1, 1}
end
return busy(ttl)
