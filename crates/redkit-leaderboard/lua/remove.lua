-- KEYS / ARGV[1..9+S]: see common.lua. ARGV[A]: operation:
--   'members' member...   scopes: 'f' the all-time board, then the current board of
--                         every period (back 0); removes from all of them
--   'outside' n           one scope: everyone below position n
--   'score' lo hi         one scope: everyone with a stored value in [lo, hi]
--   'clear'               one scope: the whole board
-- Member data and the dense-ranking set go with the members, so nothing is orphaned.
-- Reply: how many members were removed (from the all-time board for 'members').
local op = ARGV[A]

local function drop(b, members, stored)
  redis.call('ZREM', b.z, unpack(members))
  redis.call('HDEL', b.d, unpack(members))
  if ranking == 'd' then
    for i = 1, #members do retie(b, stored[i], false) end
  end
end

if op == 'members' then
  local removed = 0
  for k = 1, #boards do
    local members, stored = {}, {}
    for i = A + 1, #ARGV do
      local s = redis.call('ZSCORE', boards[k].z, ARGV[i])
      if s then
        members[#members + 1] = ARGV[i]
        stored[#stored + 1] = tonumber(s)
      end
    end
    if #members > 0 then drop(boards[k], members, stored) end
    if k == 1 then removed = #members end
  end
  return removed
end

local b = boards[1]
if op == 'clear' then
  return redis.call('DEL', b.z, b.d, b.t)
end

local removed = 0
while true do
  local flat
  if op == 'outside' then
    local n = tonumber(ARGV[A + 1])
    flat = redis.call('ZRANGE', b.z, n, n + 499, 'WITHSCORES')
  else
    flat = redis.call('ZRANGEBYSCORE', b.z, ARGV[A + 1], ARGV[A + 2], 'WITHSCORES', 'LIMIT', 0, 500)
  end
  if #flat == 0 then break end
  local members, stored = {}, {}
  for i = 1, #flat / 2 do
    members[i] = flat[2 * i - 1]
    stored[i] = tonumber(flat[2 * i])
  end
  drop(b, members, stored)
  removed = removed + #members
end
return removed
