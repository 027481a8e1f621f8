-- KEYS[1]: board base key (see common.lua). ARGV[9]: operation:
--   'members' member...       from the all-time and current period boards
--   'outside' scope n          everyone below position n on one board
--   'score' scope lo hi        everyone with a stored value in [lo, hi] on one board
--   'clear' scope              the whole board
-- Member data and the dense-ranking set go with the members, so nothing is orphaned.
-- Reply: how many members were removed (from the all-time board for 'members').
local op = ARGV[9]

local function drop(key, members, stored)
  redis.call('ZREM', key, unpack(members))
  redis.call('HDEL', key .. ':data', unpack(members))
  if ranking == 'd' then
    for i = 1, #members do retie(key, stored[i], false) end
  end
end

if op == 'members' then
  local keys = { base .. ':all' }
  if #periods > 0 then
    local secs = now_secs()
    for p = 1, #periods do
      local code = string.sub(periods, p, p)
      keys[#keys + 1] = base .. ':' .. code .. ':' .. string.format('%d', period_index(code, secs))
    end
  end
  local removed = 0
  for k = 1, #keys do
    local members, stored = {}, {}
    for i = 10, #ARGV do
      local s = redis.call('ZSCORE', keys[k], ARGV[i])
      if s then
        members[#members + 1] = ARGV[i]
        stored[#stored + 1] = tonumber(s)
      end
    end
    if #members > 0 then drop(keys[k], members, stored) end
    if k == 1 then removed = #members end
  end
  return removed
end

local key = scope_key(ARGV[10])
if op == 'clear' then
  return redis.call('DEL', key, key .. ':data', key .. ':ties')
end

local removed = 0
while true do
  local flat
  if op == 'outside' then
    local n = tonumber(ARGV[11])
    flat = redis.call('ZRANGE', key, n, n + 499, 'WITHSCORES')
  else
    flat = redis.call('ZRANGEBYSCORE', key, ARGV[11], ARGV[12], 'WITHSCORES', 'LIMIT', 0, 500)
  end
  if #flat == 0 then break end
  local members, stored = {}, {}
  for i = 1, #flat / 2 do
    members[i] = flat[2 * i - 1]
    stored[i] = tonumber(flat[2 * i])
  end
  drop(key, members, stored)
  removed = removed + #members
end
return removed
