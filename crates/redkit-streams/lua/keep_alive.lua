-- KEYS[1]: the stream `<prefix>:stream:{<name>}`.
-- ARGV[1]: group, ARGV[2]: consumer, ARGV[3..]: ids (`<ms>-<seq>`) its handlers run.
-- A heartbeat: resets the idle time of the entries `consumer` still holds, so they are
-- not claimed while their handlers run. XCLAIM with min-idle 0 and JUSTID (no delivery
-- counted) would move an entry to `consumer` whoever holds it now, taking back an entry
-- another consumer claimed and runs: so each id's owner is checked with XPENDING first,
-- in this same atomic step, and only the consumer's own entries are touched. XCLAIM on
-- 7.0+ also drops entries deleted from the stream from the pending list and its reply.
-- Reply: the ids no longer held (claimed by another consumer, acknowledged or deleted).
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', key, group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == consumer then
    mine[#mine + 1] = ARGV[i]
  else
    lost[#lost + 1] = ARGV[i]
  end
end
-- in chunks: unpack() of thousands of values would overflow the Lua stack
for from = 1, #mine, 500 do
  local args = { key, group, consumer, 0 }
  for i = from, math.min(from + 499, #mine) do args[#args + 1] = mine[i] end
  args[#args + 1] = 'JUSTID'
  local kept = {}
  for _, id in ipairs(redis.call('XCLAIM', unpack(args))) do kept[id] = true end
  for i = 5, #args - 1 do
    if not kept[args[i]] then lost[#lost + 1] = args[i] end
  end
end
return lost
