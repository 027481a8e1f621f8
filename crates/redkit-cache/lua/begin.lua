-- KEYS[1]: an entry's fill markers (a set of load tokens), KEYS[2]: its load lock; one
-- hash tag.
-- ARGV[1]: the load's token, ARGV[2]: how long the marker lives (ms), ARGV[3]: the lock's
-- ttl ms ('' = the load takes no lock).
-- A load begins: with a lock, only if the lock is free (then the load holds it); the
-- token joins the markers, which every later set or delete of the entry deletes, so the
-- load's fill (fill.lua) can tell whether anything changed since. The markers expire
-- with their longest-lived token (a load that takes longer is not written).
-- Reply: 1 begun, 0 the lock is held by another load (nothing changed).
if ARGV[3] ~= '' then
  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then return 0 end
end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
