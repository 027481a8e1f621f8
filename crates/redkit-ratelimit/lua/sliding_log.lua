-- KEYS, ARGV: see decide.lua (this file is a part of its script).
-- Sliding log: every admitted unit is a member of a sorted set scored by its time; the
-- window (now - w, now] is exact. A member is a sequence number, 10 hexadecimal digits
-- ("%010x"), one above the newest member's; its score is the time, never below the
-- newest member's (even when the clock steps back). So the newest member is always last
-- in (score, member) order, members of one score sort by sequence (fixed width: "9" can
-- never sort after "10"), every new member is distinct from every member present, and
-- ZPOPMAX takes back exactly the newest units: the set's cardinality is the number of
-- units held, always. While blocked the set holds only the member "B" scored with the
-- block's end.
local sliding_log = {}

-- The sequence number of a member. A member of another form (the "<time>:<n>" of
-- earlier versions) reads as 2^39: new members then sort after it and never equal it.
local function log_seq(member)
  local n = string.len(member) == 10 and tonumber(member, 16)
  return n or 2 ^ 39
end

function sliding_log.load(key, p, now, ph)
  local s = { n = 0 }
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[1] == nil then
    return s
  end
  if last[1] == 'B' then
    local till = tonumber(last[2])
    if till > now then
      s.till = till
      return s
    end
    redis.call('DEL', key)
    return s
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - p.w))
  s.n = redis.call('ZCARD', key)
  if s.n > 0 then
    -- the newest member survived the trim (else nothing did)
    s.newest = tonumber(last[2])
    s.seq = log_seq(last[1])
  end
  return s
end

function sliding_log.fits(s, p, cost)
  return s.n + cost <= p.c
end

function sliding_log.status(s, p, now)
  local reset = 0
  if s.newest then
    reset = math.max(s.newest + p.w - now, 0)
  end
  return math.max(p.c - s.n, 0), reset
end

-- The unit that must leave first is the (n + cost - c)-th oldest.
function sliding_log.wait(key, s, p, now, cost)
  local k = s.n + cost - p.c
  local at = redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')
  return math.max(tonumber(at[2]) + p.w - now, 1)
end

function sliding_log.consume(key, s, p, now, cost)
  cost = math.min(cost, p.c)
  local ts = math.max(now, s.newest or now)
  local score = int(ts)
  local seq = s.seq or 0
  local args = {}
  for j = 1, cost do
    args[#args + 1] = score
    args[#args + 1] = string.format('%010x', seq + j)
    if #args >= 1000 or j == cost then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
  s.n = s.n + cost
  s.seq = seq + cost
  s.newest = ts
  redis.call('PEXPIREAT', key, ms_ceil(ts + p.w))
end

function sliding_log.give(key, s, p, now, n)
  if s.n == 0 then return end
  redis.call('ZPOPMAX', key, math.min(n, s.n))
  s.n = math.max(s.n - n, 0)
  s.newest, s.seq = nil, nil
  if s.n > 0 then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    s.newest, s.seq = tonumber(last[2]), log_seq(last[1])
  end
end

function sliding_log.block(key, s, p, now, till)
  redis.call('DEL', key)
  redis.call('ZADD', key, int(till), 'B')
  redis.call('PEXPIREAT', key, ms_ceil(till))
end
