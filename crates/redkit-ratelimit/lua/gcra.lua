-- KEYS, ARGV: see decide.lua (this file is a part of its script).
-- GCRA, which is also the token bucket with continuous refill: one emission interval T
-- per unit, capacity c. State: the theoretical arrival time (TAT) of the next unit (see
-- tat_string, or "B:<until>"), expiring after the TAT (see tat_save). A request of cost n
-- fits when max(TAT, now) + n*T - now <= c*T; tokens left = (c*T - (TAT - now)) / T.
-- Denials write nothing.
local gcra = {}

function gcra.load(key, p, now, ph)
  local s = { tat = now }
  local v = redis.call('GET', key)
  if v then
    local till = blocked_until(v)
    if till then
      if till > now then s.till = till end
    else
      s.stored = tat_parse(v)
      s.tat = math.max(s.stored or now, now)
    end
  end
  s.now = now
  return s
end

function gcra.fits(s, p, cost)
  return s.tat + cost * p.w - s.now <= p.c * p.w
end

function gcra.status(s, p, now)
  return math.max(math.floor((p.c * p.w - (s.tat - now)) / p.w), 0), s.tat - now
end

function gcra.wait(key, s, p, now, cost)
  return s.tat + cost * p.w - p.c * p.w - now
end

local function gcra_save(key, s, p, now)
  if s.tat > now then
    tat_save(key, s.stored, s.tat, p.c * p.w)
    s.stored = s.tat
  else
    redis.call('DEL', key)
    s.stored = nil
  end
end

function gcra.consume(key, s, p, now, cost)
  s.tat = math.min(s.tat + cost * p.w, now + MAX_AHEAD)
  gcra_save(key, s, p, now)
end

function gcra.give(key, s, p, now, n)
  s.tat = math.max(s.tat - n * p.w, now)
  gcra_save(key, s, p, now)
end

function gcra.block(key, s, p, now, till)
  block_string(key, till)
end
