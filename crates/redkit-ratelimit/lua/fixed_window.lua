-- KEYS and ARGV: see decide.lua (this file is a part of its script).
-- Fixed window: a count per window. Window i covers server time [i*w - ph, (i+1)*w - ph),
-- where ph (the key's phase, 0 for aligned windows) spreads the resets of different keys.
-- State: a hash {<window index> = count} (see fw_add), or "B:<until>" while blocked.
local fixed_window = {}

function fixed_window.load(key, p, now, ph)
  local shifted = now + ph % p.w
  local idx = math.floor(shifted / p.w)
  local s = { field = int(idx), count = 0, left = (idx + 1) * p.w - shifted }
  local v = redis.pcall('HGET', key, s.field)
  if type(v) == 'table' then
    -- a string: a block, running or just over
    s.str = true
    local till = blocked_until(redis.call('GET', key))
    if till and till > now then s.till = till end
  elseif v then
    s.count = tonumber(v)
  end
  return s
end

function fixed_window.fits(s, p, cost)
  return s.count + cost <= p.c
end

-- remaining, reset after
function fixed_window.status(s, p)
  return math.max(p.c - s.count, 0), s.left
end

function fixed_window.wait(key, s, p, now, cost)
  return s.left
end

function fixed_window.consume(key, s, p, now, cost)
  if s.str then
    redis.call('DEL', key)
    s.str = nil
  end
  s.count = fw_add(key, s.field, cost, now + s.left)
end

function fixed_window.give(key, s, p, now, n)
  if s.count == 0 then return end
  n = math.min(n, s.count)
  s.count = redis.call('HINCRBY', key, s.field, -n)
end

function fixed_window.block(key, s, p, now, till)
  block_string(key, till)
end
