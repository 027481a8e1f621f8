-- KEYS / ARGV[1..9+S]: see common.lua. Scopes: the combined board ('f'), then the
-- sources. ARGV[A]: aggregate ('s' sum, 'M' max, 'm' min), ARGV[A + 1]: ttl in ms
-- (0 = none).
-- Reads every source (O(total members), in chunks), keeps each member's aggregate score
-- and the tie-break step that goes with it (the latest contribution for a sum, the
-- earliest for an equal max or min), and rewrites the combined board with member data.
-- Reply: the combined board's size, or {-1} when a sum leaves the score budget.
local dest = boards[1]
local agg = ARGV[A]
local ttl = tonumber(ARGV[A + 1])
local acc, order, data = {}, {}, {}
for a = 2, #boards do
  local key = boards[a].z
  local start = 0
  while true do
    local flat = redis.call('ZRANGE', key, start, start + 499, 'WITHSCORES')
    if #flat == 0 then break end
    local members = {}
    for i = 1, #flat / 2 do
      local m = flat[2 * i - 1]
      local stored = tonumber(flat[2 * i])
      local g = group_of(stored)
      local st = stored - g * pow
      local s = sign * g
      members[i] = m
      local cur = acc[m]
      if not cur then
        acc[m] = { s, st }
        order[#order + 1] = m
      elseif agg == 's' then
        cur[1] = cur[1] + s
        if st > cur[2] then cur[2] = st end
      elseif (agg == 'M' and s > cur[1]) or (agg == 'm' and s < cur[1]) then
        cur[1], cur[2] = s, st
      elseif s == cur[1] and st < cur[2] then
        cur[2] = st
      end
    end
    local d = redis.call('HMGET', boards[a].d, unpack(members))
    for i = 1, #members do
      if d[i] and data[members[i]] == nil then data[members[i]] = d[i] end
    end
    start = start + 500
  end
end

for _, m in ipairs(order) do
  if out_of_budget(sign * acc[m][1]) then return { -1 } end
end

redis.call('DEL', dest.z, dest.d, dest.t)
local i = 1
while i <= #order do
  local zargs, hargs, targs = {}, {}, {}
  for j = i, math.min(i + 499, #order) do
    local m = order[j]
    local g = sign * acc[m][1]
    zargs[#zargs + 1] = g * pow + acc[m][2]
    zargs[#zargs + 1] = m
    if data[m] then
      hargs[#hargs + 1] = m
      hargs[#hargs + 1] = data[m]
    end
    if ranking == 'd' then
      targs[#targs + 1] = g
      targs[#targs + 1] = fmt(g)
    end
  end
  redis.call('ZADD', dest.z, unpack(zargs))
  if #hargs > 0 then redis.call('HSET', dest.d, unpack(hargs)) end
  if #targs > 0 then redis.call('ZADD', dest.t, unpack(targs)) end
  i = i + 500
end
if ttl > 0 then
  redis.call('PEXPIRE', dest.z, ttl)
  redis.call('PEXPIRE', dest.d, ttl)
  redis.call('PEXPIRE', dest.t, ttl)
end
return #order
