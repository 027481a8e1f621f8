-- KEYS and ARGV: see decide.lua (this file is a part of its script, inside the
-- function that builds the general path: `now`, `L`, `base` and `items`, the requests'
-- numbers, come from decide.lua).
-- Decides one request of any op over any limits; returns its numbers.
local ALGORITHMS = { fixed_window, sliding_window, sliding_log, gcra }

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


local function one(i)
  local out = {}
  local r = (i - 1) * 3
  local op, amount, ph = items[r + 1], items[r + 2], items[r + 3]
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

return function(i)
  local ok, res = pcall(one, i)
  if not ok then
    res = {}
    for j = 1, 3 * L do res[j] = -2 end
  end
  return res
end
