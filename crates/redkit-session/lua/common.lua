-- KEYS[1]: one session's hash `<prefix>:sess:{<handle>}` (the handle = SHA-256 of the
--          id, so the key never holds the id). Fields: `_c` created ms, `_t` last touch
--          ms, `_x` absolute deadline ms, `_u` user, `_ua` user agent, `_ip` address,
--          `d:<name>` data (JSON).
-- ARGV[1]: idle timeout ms, ARGV[2]: touch interval ms; the rest per script.
-- Time is the server's. The key's own expiry is min(last touch + idle, deadline), so
-- Redis itself ends a session at either timeout; plain reads (HGETALL) rely on that.
local key = KEYS[1]
local idle = tonumber(ARGV[1])
local touch_every = tonumber(ARGV[2])
local now_ms
local function now()
  if not now_ms then
    local clock = redis.call('TIME')
    now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  end
  return now_ms
end

-- The session's last touch and deadline if it lives; an ended leftover is deleted.
local function alive()
  local v = redis.call('HMGET', key, '_t', '_x')
  if not v[1] or not v[2] then return false end
  local touched, deadline = tonumber(v[1]), tonumber(v[2])
  if now() >= touched + idle or now() >= deadline then
    redis.call('DEL', key)
    return false
  end
  return touched, deadline
end

-- Extends the idle timeout when due (or always with `force`), never past the deadline.
local function extend(touched, deadline, force)
  if force or now() - touched >= touch_every then
    redis.call('HSET', key, '_t', now())
    redis.call('PEXPIREAT', key, math.min(now() + idle, deadline))
  end
end
