-- KEYS[1]: a write-behind log `<prefix>:cache:<ns>:wb:{<ns>#<shard>}` (a stream),
-- KEYS[2..n]: entries of that shard (same hash tag).
-- ARGV[1]: invalidation channel, ARGV[2]: message ('' = none), ARGV[3]: 'set' or 'del',
-- then per entry its name and, for 'set', the entry's bytes (22-byte header, value) and
-- ttl ms.
-- Changes the entries and appends each change to the log in one step, so a write is
-- acknowledged only with its flush record beside it, and the order of the records is
-- the order of the writes (the record's id is the write's version).
-- Reply: 'set' the number of entries written, 'del' how many existed.
local n = 0
if ARGV[3] == 'set' then
  for i = 2, #KEYS do
    local at = 4 + (i - 2) * 3
    local bytes = ARGV[at + 1]
    redis.call('SET', KEYS[i], bytes, 'PX', ARGV[at + 2])
    redis.call('XADD', KEYS[1], '*', 'k', ARGV[at], 'v', string.sub(bytes, 23))
    n = n + 1
  end
else
  for i = 2, #KEYS do
    n = n + redis.call('DEL', KEYS[i])
    redis.call('XADD', KEYS[1], '*', 'k', ARGV[2 + i])
  end
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n
