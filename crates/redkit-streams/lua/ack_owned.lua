-- KEYS[1]: the stream `<prefix>:stream:{<name>}`.
-- ARGV[1]: group, ARGV[2]: consumer, ARGV[3..]: ids (`<ms>-<seq>`) whose handlers
-- finished.
-- Acknowledges the ids `consumer` still holds. XACK alone acknowledges an entry whoever
-- holds it: a handler whose entry was claimed away (its consumer paused past
-- claim_after) would acknowledge the entry the new owner is running. Each owner is
-- checked with XPENDING in this same atomic step; ids held by another consumer, or no
-- longer pending, are left alone and returned.
-- Reply: the ids not acknowledged.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, refused = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', key, group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == consumer then
    mine[#mine + 1] = ARGV[i]
  else
    refused[#refused + 1] = ARGV[i]
  end
end
-- in chunks: unpack() of thousands of values would overflow the Lua stack
for from = 1, #mine, 500 do
  redis.call('XACK', key, group, unpack(mine, from, math.min(from + 499, #mine)))
end
return refused
