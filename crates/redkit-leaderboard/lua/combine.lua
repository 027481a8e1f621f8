-- KEYS[1]: board base key (see common.lua). ARGV[9]: the combined board's scope
-- ('x:<name>'), ARGV[10]: aggregate ('s' sum, 'M' max, 'm' min), ARGV[11]: ttl in ms
-- (0 = none), ARGV[12..]: source scopes.
-- Reads every source (O(total members), in chunks), keeps each member's aggregate score
-- and the tie-break step that goes with it (the latest contribution for a sum, the
-- earliest for an equal max or min), and rewrites the combined board with member data.
-- Reply: the combined board's size, or {-1} when a sum leaves the score budget.
local dest = scope_key(ARGV[9])
local agg = ARGV[10]
local ttl = tonumber(ARGV[11])
local acc, order, data = {}, {}, {}
for a = 12, #ARGV do
  local key = scope_key(ARGV[a])
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
    local d = redis.call('HMGET', key .. ':data', unpack(members))
    for i = 1, #members do
      if d[i] and data[members[i]] == nil then data[members[i]] = d[i] end
    end
    start = start + 500
  end
end

for _, m in ipairs(order) do
  if out_of_budget(sign * acc[m][1]) then return { -1 } end
end

redis.call('DEL', dest, dest .. ':data', dest .. ':ties')
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
  redis.call('ZADD', dest, unpack(zargs))
  if #hargs > 0 then redis.call('HSET', dest .. ':data', unpack(hargs)) end
  if #targs > 0 then redis.call('ZADD', dest .. ':ties', unpack(targs)) end
  i = i + 500
end
if ttl > 0 then
  redis.call('PEXPIRE', dest, ttl)
  redis.call('PEXPIRE', dest .. ':data', ttl)
  redis.call('PEXPIRE', dest .. ':ties', ttl)
end
return #order
