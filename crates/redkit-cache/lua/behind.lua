-- KEYS[1]: a write-behind log `<prefix>:cache:<ns>:wb:{<ns>#<shard>}` (a stream),
-- KEYS[2..n]: pairs of an entry of that shard `…:g<gen>:{<ns>#<shard>}:e:<key>` and its
-- fill markers `…:{<ns>#<shard>}:fill:<key>` (same hash tag).
-- ARGV[1]: invalidation channel, ARGV[2]: message ('' = none), ARGV[3]: 'set' or 'del',
-- then per entry its name and, for 'set', the entry's bytes (22-byte header, value) and
-- ttl ms.
-- Changes the entries and appends each change to the log in one step, so a write is
-- acknowledged only with its flush record beside it, and the order of the records is
-- the order of the writes (the record's id is the write's version). Each record is
-- appended before its entry changes and the script's first write is an XADD, so a log
-- that cannot take a record (another type) fails the script before anything is
-- written: no entry changes without its record. (Redis refuses a script's writes for
-- OOM only before its first write.) Loads that began before the change cannot write
-- their older values over it (their fill markers are deleted).
-- Reply: 'set' the number of entries written, 'del' how many existed.
local n = 0
local j = 0
for i = 2, #KEYS, 2 do
  if ARGV[3] == 'set' then
    local at = 4 + j * 3
    local bytes = ARGV[at + 1]
    redis.call('XADD', KEYS[1], '*', 'k', ARGV[at], 'v', string.sub(bytes, 23))
    redis.call('SET', KEYS[i], bytes, 'PX', ARGV[at + 2])
    n = n + 1
  else
    redis.call('XADD', KEYS[1], '*', 'k', ARGV[4 + j])
    n = n + redis.call('DEL', KEYS[i])
  end
  redis.call('DEL', KEYS[i + 1])
  j = j + 1
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n
