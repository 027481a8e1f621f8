-- KEYS[1]: an entry's fill markers, KEYS[2]: its load lock; one hash tag.
-- ARGV[1]: the load's token, ARGV[2]: '1' when the load holds the lock.
-- A load that writes nothing (its loader failed or found nothing to cache) withdraws its
-- token and releases its lock if it still holds it. Reply: 1.
redis.call('SREM', KEYS[1], ARGV[1])
if ARGV[2] == '1' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
