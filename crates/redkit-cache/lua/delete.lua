-- KEYS[1..n]: pairs of an entry and its fill markers, all of one slot.
-- ARGV[1]: channel, ARGV[2]: message.
-- Deletes the entries, cancels the fills of loads that began before (so a load that read
-- the record before it was deleted cannot bring the entry back) and publishes the
-- invalidation in one step. Reply: how many entries existed.
local n = 0
for i = 1, #KEYS, 2 do
  n = n + redis.call('DEL', KEYS[i])
  redis.call('DEL', KEYS[i + 1])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
