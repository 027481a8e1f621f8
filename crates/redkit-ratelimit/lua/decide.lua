-- KEYS[(i-1)*L + j]: the state of limit j for request i (i = 1..n, j = 1..L); the keys of
--   one request share the subject's hash tag.
-- ARGV[1]: L, the number of limits; then 4 values per limit j: algorithm (1 fixed window,
--   2 sliding window, 3 sliding log, 4 GCRA / token bucket), capacity, window or emission
--   interval in microseconds, block after a denial in microseconds (0: none);
--   then 3 values per request: op (1 check, 2 peek, 3 penalty, 4 reward, 5 block,
--   6 reset), amount (cost, points, or block microseconds), phase in microseconds.
-- Decides the requests in order, atomically, on the server's clock. A check consumes every
-- limit or none. Returns per request: allowed (1 or 0), then per limit: remaining, reset
-- after (us), retry after (us, -1 when that limit alone would allow). A request whose keys
-- hold another type of value fails alone (before it writes anything): allowed is -1.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ALGORITHMS = { fixed_window, sliding_window, sliding_log, gcra }

local L = tonumber(ARGV[1])
local limits = {}
for j = 1, L do
  local b = 1 + (j - 1) * 4
  limits[j] = {
    a = ALGORITHMS[tonumber(ARGV[b + 1])],
    c = tonumber(ARGV[b + 2]),
    w = tonumber(ARGV[b + 3]),
    blk = tonumber(ARGV[b + 4]),
  }
end

local base = 1 + 4 * L

local function one(i)
  local out = {}
  local r = base + (i - 1) * 3
  local op, amount, ph = tonumber(ARGV[r + 1]), tonumber(ARGV[r + 2]), tonumber(ARGV[r + 3])
  local keys, states = {}, {}
  if op == 6 then
    for j = 1, L do
      keys[j] = KEYS[(i - 1) * L + j]
      redis.call('DEL', keys[j])
    end
  end
  for j = 1, L do
    keys[j] = KEYS[(i - 1) * L + j]
    states[j] = limits[j].a.load(keys[j], limits[j], now, ph)
  end

  local cost = 1
  if op == 1 then cost = amount end
  local fits, all = {}, true
  for j = 1, L do
    fits[j] = not states[j].till and limits[j].a.fits(states[j], limits[j], cost)
    all = all and fits[j]
  end

  if op == 1 then
    for j = 1, L do
      local p, s = limits[j], states[j]
      if all then
        p.a.consume(keys[j], s, p, now, cost)
      elseif not fits[j] and not s.till and p.blk > 0 then
        s.till = now + p.blk
        p.a.block(keys[j], s, p, now, s.till)
      end
    end
  elseif op == 3 or op == 4 or op == 5 then
    all = true
    for j = 1, L do
      local p, s = limits[j], states[j]
      if op == 5 then
        s.till = math.max(s.till or 0, now + amount)
        p.a.block(keys[j], s, p, now, s.till)
      elseif not s.till then
        if op == 3 then
          p.a.consume(keys[j], s, p, now, math.min(amount, MAX_POINTS))
        else
          p.a.give(keys[j], s, p, now, amount)
        end
      end
      fits[j] = not s.till and p.a.fits(s, p, 1)
      all = all and fits[j]
    end
  end

  out[#out + 1] = all and 1 or 0
  for j = 1, L do
    local p, s = limits[j], states[j]
    if s.till then
      out[#out + 1] = 0
      out[#out + 1] = s.till - now
      out[#out + 1] = s.till - now
    else
      local remaining, reset = p.a.status(s, p, now)
      out[#out + 1] = remaining
      out[#out + 1] = reset
      if fits[j] or (op == 1 and all) then
        out[#out + 1] = -1
      else
        out[#out + 1] = p.a.wait(keys[j], s, p, now, cost)
      end
    end
  end
  return out
end

local out = {}
for i = 1, (#ARGV - base) / 3 do
  local ok, res = pcall(one, i)
  if not ok then
    res = { -1 }
    for j = 1, 3 * L do res[j + 1] = 0 end
  end
  for _, v in ipairs(res) do out[#out + 1] = v end
end
return out
