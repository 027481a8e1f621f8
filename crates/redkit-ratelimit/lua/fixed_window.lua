-- KEYS and ARGV: see decide.lua (this file is a part of its script).
-- Fixed window: a count per window. Window i covers server time [i*w - ph, (i+1)*w - ph),
-- where ph (the key's phase, 0 for aligned windows) spreads the resets of different keys.
-- State: the integer tag * FW_SPAN + count (see common.lua), expiring at the window's
-- end, or "B:<until>" while blocked.
local fixed_window = {}

function fixed_window.load(key, p, now, ph)
  local shifted = now + ph % p.w
  local idx = math.floor(shifted / p.w)
  local s = { base = fw_base(idx), count = 0, left = (idx + 1) * p.w - shifted }
  local v = redis.call('GET', key)
  if v then
    local till = blocked_until(v)
    if till then
      if till > now then s.till = till end
    else
      local n = tonumber(v)
      if n and n >= s.base and n < s.base + FW_SPAN then
        s.count = n - s.base
      end
    end
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

local function fixed_save(key, s, now)
  redis.call('SET', key, s.base + s.count, 'PXAT', ms_ceil(now + s.left))
end

function fixed_window.consume(key, s, p, now, cost)
  s.count = math.min(s.count + cost, MAX_POINTS)
  fixed_save(key, s, now)
end

function fixed_window.give(key, s, p, now, n)
  if s.count == 0 then return end
  s.count = math.max(s.count - n, 0)
  fixed_save(key, s, now)
end

function fixed_window.block(key, s, p, now, till)
  block_string(key, till)
end
