-- KEYS, ARGV: see decide.lua (this file is a part of its script).
-- Sliding window counter: counts of the current and the previous window; the previous
-- one is weighted by how much of it still overlaps the sliding window:
-- estimate = prev * (w - elapsed) / w + cur. State: "<index>:<cur>:<prev>" (or
-- "B:<until>"), expiring when both counts have slid out.
local sliding_window = {}

function sliding_window.load(key, p, now, ph)
  local shifted = now + ph % p.w
  local idx = math.floor(shifted / p.w)
  local s = { idx = idx, cur = 0, prev = 0, elapsed = shifted - idx * p.w }
  local v = redis.call('GET', key)
  if v then
    local till = blocked_until(v)
    if till then
      if till > now then s.till = till end
    else
      local a = string.find(v, ':', 1, true)
      local b = a and string.find(v, ':', a + 1, true)
      if b then
        local i = tonumber(string.sub(v, 1, a - 1))
        local cur = tonumber(string.sub(v, a + 1, b - 1))
        if i == idx then
          s.cur, s.prev = cur, tonumber(string.sub(v, b + 1))
        elseif i == idx - 1 then
          s.prev = cur
        end
      end
    end
  end
  return s
end

local function estimate(s, w)
  return s.prev * (w - s.elapsed) / w + s.cur
end

function sliding_window.fits(s, p, cost)
  return estimate(s, p.w) + cost <= p.c
end

function sliding_window.status(s, p)
  local reset = 0
  if s.cur > 0 then
    reset = 2 * p.w - s.elapsed
  elseif s.prev > 0 then
    reset = p.w - s.elapsed
  end
  return math.max(math.floor(p.c - estimate(s, p.w)), 0), reset
end

function sliding_window.wait(key, s, p, now, cost)
  local w, room = p.w, p.c - cost
  if s.cur <= room then
    -- the previous window's share decays to room - cur within this window (prev > 0 here)
    return math.max(math.ceil(w - (room - s.cur) * w / s.prev - s.elapsed), 1)
  end
  -- only in the next window, where this window's count is the decaying share
  return math.ceil(2 * w - room * w / s.cur - s.elapsed)
end

local function sliding_save(key, s, now, w)
  redis.call('SET', key, int(s.idx) .. ':' .. int(s.cur) .. ':' .. int(s.prev),
    'PXAT', ms_ceil(now + 2 * w - s.elapsed))
end

function sliding_window.consume(key, s, p, now, cost)
  s.cur = math.min(s.cur + cost, MAX_POINTS)
  sliding_save(key, s, now, p.w)
end

function sliding_window.give(key, s, p, now, n)
  local from_cur = math.min(n, s.cur)
  s.cur = s.cur - from_cur
  s.prev = math.max(s.prev - (n - from_cur), 0)
  sliding_save(key, s, now, p.w)
end

function sliding_window.block(key, s, p, now, till)
  block_string(key, till)
end
