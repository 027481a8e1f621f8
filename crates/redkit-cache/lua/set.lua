-- KEYS[1..n]: pairs of an entry `<prefix>:cache:<ns>:g<gen>:{<key>}` and its fill
-- markers `…:{<key>}:fill`, all of one slot.
-- ARGV[1]: invalidation channel, ARGV[2]: message ('' = none), then per entry: value, ttl
-- ms.
-- Writes the entries, cancels the fills of loads that began before (their values are
-- older than this write) and publishes the invalidation in one step, so no write goes
-- out without its message.
for i = 1, #KEYS, 2 do
  local at = i + 2
  redis.call('SET', KEYS[i], ARGV[at], 'PX', ARGV[at + 1])
  redis.call('DEL', KEYS[i + 1])
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return #KEYS / 2
