-- KEYS[1..n]: entries `<prefix>:cache:<ns>:g<gen>:{<key>}` of one slot.
-- ARGV[1]: invalidation channel, ARGV[2]: message ('' = none), then per key: value, ttl ms.
-- Writes the entries and publishes their invalidation in one step, so no write goes out
-- without its message.
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i + 1], 'PX', ARGV[2 * i + 2])
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return #KEYS
