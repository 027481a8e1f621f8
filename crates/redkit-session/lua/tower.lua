-- KEYS[1]: one session's hash (see common.lua) for the tower-sessions store, whose expiry
-- date (`_e`, ms) drives the idle timeout; the absolute deadline `_x` still applies.
-- ARGV[1]: operation, ARGV[2]: expiry ms, ARGV[3]: absolute timeout ms, ARGV[4]: user
-- ('' = none), then data field name, value pairs.
--   'create'  only if the key is free. Reply: 1, or 0 when taken.
--   'save'    only if the session lives; replaces the data fields. Reply: {previous
--             user or false}, or false when the session is gone (never resurrected).
--             When the record logs in a user (ARGV[4]) the session is not stored with,
--             it writes nothing and replies the status INDEX: the caller adds the
--             session to that user's index first, then sends 'save!', which writes.
--             So a logged-in session never exists before its index entry.
--   'load'    Reply: the fields, or false when the session is gone or past its expiry
--             or deadline.
-- The key expires at min(expiry, deadline); an expiry already past deletes it.
local key = KEYS[1]
local op = ARGV[1]
local expiry = tonumber(ARGV[2])
local user = ARGV[4]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function write(deadline)
  if user ~= '' then redis.call('HSET', key, '_u', user) else redis.call('HDEL', key, '_u') end
  redis.call('HSET', key, '_e', expiry, '_t', now)
  if #ARGV >= 5 then redis.call('HSET', key, unpack(ARGV, 5)) end
  local ends = math.min(expiry, deadline)
  if ends <= now then
    redis.call('DEL', key)
  else
    redis.call('PEXPIREAT', key, ends)
  end
end

if op == 'create' then
  if redis.call('EXISTS', key) == 1 then return 0 end
  local deadline = now + tonumber(ARGV[3])
  redis.call('HSET', key, '_c', now, '_x', deadline)
  write(deadline)
  return 1
end

if op == 'load' then
  local t = redis.call('HMGET', key, '_x', '_e')
  if not t[1] or not t[2] then return false end
  if now >= tonumber(t[1]) or now >= tonumber(t[2]) then
    redis.call('DEL', key)
    return false
  end
  return redis.call('HGETALL', key)
end

-- 'save', 'save!'
local v = redis.call('HMGET', key, '_x', '_u')
if not v[1] then return false end
if op == 'save' and user ~= '' and user ~= v[2] then return { ok = 'INDEX' } end
local deadline = tonumber(v[1])
if now >= deadline then
  redis.call('DEL', key)
  return false
end
local stale = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 2) == 'd:' then stale[#stale + 1] = field end
end
if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
write(deadline)
return { v[2] }
