-- KEYS: every key a script touches, passed by the client (no key name is made here),
--   three per board: the sorted set, its member data hash (`<board>:data`) and its set
--   of distinct scores (`<board>:ties`, used by dense ranking only, passed for every
--   board so the layout has one rule). All share the board's hash tag
--   `<prefix>:lb:{<name>}`, so a script touches one cluster slot.
-- ARGV[1..8]: the board (sign, tie-break bits, epoch ms, resolution ms, ranking,
--   UTC offset s, finished periods kept, period codes).
-- ARGV[9]: the number S of scopes, ARGV[10..9+S] one token per scope; each takes its
--   boards from KEYS in order:
--   'f'                       one board, fixed (all-time, combined, a period by date);
--   '<code>:<back>:<i>,<i>..' the board `back` periods before the current one on the
--                             SERVER's clock: one board per listed period index (the
--                             client lists the indexes around its own clock); the one
--                             whose index is right is taken. When none is, the script
--                             writes nothing and replies the status
--                             `PERIOD <code> <current index>`, and the client retries
--                             with boards around that index.
-- The script's own arguments start at ARGV[A], A = 10 + S.
-- Stored scores ascend best-first on either order: stored = group * 2^bits + step, where
-- group = sign * score (sign -1 on high-first boards) and step counts tie-break
-- resolution steps since the epoch (0 without a tie-break). Scores go back to the client
-- as the strings Redis stores, so no Lua number rounding reaches it.
local sign = tonumber(ARGV[1])
local bits = tonumber(ARGV[2])
local pow = 2 ^ bits
local epoch_ms = tonumber(ARGV[3])
local res_ms = tonumber(ARGV[4])
local ranking = ARGV[5]
local offset = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
local periods = ARGV[8]
local floor = math.floor
local max_group = bits > 0 and (2 ^ (53 - bits) - 1) or math.huge

local now_cache
local function now_ms()
  if not now_cache then
    local t = redis.call('TIME')
    now_cache = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  end
  return now_cache
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function out_of_budget(g)
  return g ~= g or g == math.huge or g == -math.huge or math.abs(g) > max_group
end

local function group_of(stored)
  if bits == 0 then return stored end
  return floor(stored / pow)
end

local function group_min(g)
  return g * pow
end

local function group_max(g)
  if bits == 0 then return g end
  return g * pow + pow - 1
end

-- Calendar arithmetic (H. Hinnant's days <-> civil), floor division throughout.
local function civil(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function period_index(code, secs)
  local l = secs + offset
  local day = floor(l / 86400)
  if code == 'h' then return floor(l / 3600) end
  if code == 'd' then return day end
  if code == 'w' then return floor((day + 3) / 7) end
  local y, m = civil(day)
  if code == 'm' then return y * 12 + m - 1 end
  return y
end

local function period_start(code, index)
  local l
  if code == 'h' then l = index * 3600
  elseif code == 'd' then l = index * 86400
  elseif code == 'w' then l = (index * 7 - 3) * 86400
  elseif code == 'm' then
    local y = floor(index / 12)
    l = days_from_civil(y, index - y * 12 + 1) * 86400
  else l = days_from_civil(index, 1) * 86400 end
  return l - offset
end

local function now_secs()
  return floor(now_ms() / 1000)
end

-- The rank of the first of a run of entries that starts at 0-based position `pos`.
local function first_rank(b, g, pos)
  if ranking == 'o' then return pos + 1 end
  if ranking == 's' then
    return redis.call('ZCOUNT', b.z, '-inf', '(' .. fmt(group_min(g))) + 1
  end
  return redis.call('ZCOUNT', b.t, '-inf', '(' .. fmt(g)) + 1
end

-- Entries from a ZRANGE ... WITHSCORES reply whose first entry sits at position `pos`:
-- a flat array of member, stored score, rank, data (false when none).
local function ranked(b, flat, pos)
  local out = {}
  local n = #flat / 2
  if n == 0 then return out end
  local members = {}
  for i = 1, n do members[i] = flat[2 * i - 1] end
  local data = redis.call('HMGET', b.d, unpack(members))
  local prev_g, prev_rank
  for i = 1, n do
    local g = group_of(tonumber(flat[2 * i]))
    local rank
    if i == 1 then
      rank = first_rank(b, g, pos)
    elseif ranking == 'o' then
      rank = pos + i
    elseif g == prev_g then
      rank = prev_rank
    elseif ranking == 's' then
      rank = pos + i
    else
      rank = prev_rank + 1
    end
    prev_g, prev_rank = g, rank
    local j = 4 * i - 3
    out[j] = members[i]
    out[j + 1] = flat[2 * i]
    out[j + 2] = rank
    out[j + 3] = data[i]
  end
  return out
end

-- Keeps the dense-ranking set of distinct groups in step after `member`'s stored value
-- moved from `old` (false when new) to `new` (false when removed).
local function retie(b, old, new)
  if ranking ~= 'd' then return end
  local ties = b.t
  if new then
    local g = group_of(new)
    redis.call('ZADD', ties, g, fmt(g))
  end
  if old then
    local g = group_of(old)
    if redis.call('ZCOUNT', b.z, group_min(g), group_max(g)) == 0 then
      redis.call('ZREM', ties, fmt(g))
    end
  end
end

-- The scopes' boards, each {z = set, d = data, t = ties, code, index} (code and index
-- for period boards picked by the server's clock).
local A = 10 + tonumber(ARGV[9])
local boards = {}
local retry
do
  local k = 0
  for s = 1, A - 10 do
    local token = ARGV[9 + s]
    if token == 'f' then
      boards[s] = { z = KEYS[k + 1], d = KEYS[k + 2], t = KEYS[k + 3] }
      k = k + 3
    else
      local code, back, list = string.match(token, '^(%a):(%d+):(.*)$')
      local current = period_index(code, now_secs())
      local want = current - tonumber(back)
      for idx in string.gmatch(list, '[^,]+') do
        if tonumber(idx) == want then
          boards[s] = { z = KEYS[k + 1], d = KEYS[k + 2], t = KEYS[k + 3], code = code, index = want }
        end
        k = k + 3
      end
      if not boards[s] and not retry then
        retry = 'PERIOD ' .. code .. ' ' .. string.format('%d', current)
      end
    end
  end
end
if retry then return { ok = retry } end
