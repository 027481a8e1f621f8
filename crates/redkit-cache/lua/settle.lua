-- KEYS[1]: a write-behind log (stream), KEYS[2]: its flush lease `<log>:owner`, KEYS[3]:
-- its dead letters `<log>:dead` (a stream); one hash tag.
-- ARGV[1]: lease token, ARGV[2]: unused, ARGV[3]: n, ARGV[4..3+n]: ids of the
-- records handled, then per dead write: id, key, 'v' (a value) or 'd' (a removal),
-- value, error, attempts.
-- Keeps the dead writes in the dead letters and deletes the handled records (the log
-- holds only what is not flushed yet, so the next read starts at the first record not
-- flushed), all only while the token holds the
-- lease: a flusher that lost its shard cannot settle records its successor owns.
-- Reply: 1 settled, 0 the lease is lost.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[3])
local i = 4 + n
while i + 5 <= #ARGV do
  if ARGV[i + 2] == 'v' then
    redis.call('XADD', KEYS[3], '*', 'id', ARGV[i], 'k', ARGV[i + 1], 'v', ARGV[i + 3],
      'error', ARGV[i + 4], 'attempts', ARGV[i + 5])
  else
    redis.call('XADD', KEYS[3], '*', 'id', ARGV[i], 'k', ARGV[i + 1],
      'error', ARGV[i + 4], 'attempts', ARGV[i + 5])
  end
  i = i + 6
end
if n > 0 then
  local ids = {}
  for j = 4, 3 + n do ids[#ids + 1] = ARGV[j] end
  redis.call('XDEL', KEYS[1], unpack(ids))
end
return 1
