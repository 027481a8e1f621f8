-- KEYS[1]: an entry, KEYS[2]: its load lock `<entry>:lock` (same hash tag).
-- ARGV[1]: lock token ('' when the load holds no lock), ARGV[2]: the header of the entry
-- the load saw ('' none, '*' overwrite whatever is there), ARGV[3]: value, ARGV[4]: ttl
-- ms, ARGV[5]: channel, ARGV[6]: message ('' = none).
-- Writes a loaded value only while the loader still holds its lock (a loader that
-- outlived its lock must not overwrite newer data) and only if no other entry was written
-- since the load looked (a write that raced with the load wins), releases the lock and
-- announces the write. Reply: 1 written, 0 the lock was lost, 2 a newer entry is there.
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '*' then
  local now = redis.call('GETRANGE', KEYS[1], 0, 21)
  -- an entry (0xCA, kind 0-2, full header) other than the one seen
  if #now == 22 and string.byte(now, 1) == 202 and string.byte(now, 2) <= 2
      and now ~= ARGV[2] then
    if ARGV[1] ~= '' then redis.call('DEL', KEYS[2]) end
    return 2
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
if ARGV[1] ~= '' then redis.call('DEL', KEYS[2]) end
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return 1
