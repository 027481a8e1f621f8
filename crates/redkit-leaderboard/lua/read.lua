-- KEYS / ARGV[1..9+S]: see common.lua; one scope. ARGV[A]: operation:
--   'range' start count | 'around' member n | 'score' lo hi offset count (stored values)
--   | 'entries' member... | 'count' | 'pct' member
-- Replies: entries as flat member, stored score, rank, data; 'entries' puts false in
-- place of a missing member's four fields; 'count' an integer; 'pct' {worse, total}.
local b = boards[1]
local key = b.z
local op = ARGV[A]

if op == 'range' then
  local start = tonumber(ARGV[A + 1])
  local flat = redis.call('ZRANGE', key, start, start + tonumber(ARGV[A + 2]) - 1, 'WITHSCORES')
  return ranked(b, flat, start)
end

if op == 'around' then
  local pos = redis.call('ZRANK', key, ARGV[A + 1])
  if not pos then return {} end
  local n = tonumber(ARGV[A + 2])
  local last = redis.call('ZCARD', key) - 1
  local start = pos - n
  if start < 0 then start = 0 end
  local stop = start + 2 * n
  if stop > last then
    stop = last
    start = stop - 2 * n
    if start < 0 then start = 0 end
  end
  return ranked(b, redis.call('ZRANGE', key, start, stop, 'WITHSCORES'), start)
end

if op == 'score' then
  local flat = redis.call('ZRANGEBYSCORE', key, ARGV[A + 1], ARGV[A + 2], 'WITHSCORES', 'LIMIT',
    ARGV[A + 3], ARGV[A + 4])
  if #flat == 0 then return {} end
  return ranked(b, flat, redis.call('ZRANK', key, flat[1]))
end

if op == 'count' then
  return redis.call('ZCARD', key)
end

if op == 'pct' then
  local stored = redis.call('ZSCORE', key, ARGV[A + 1])
  if not stored then return {} end
  local g = group_of(tonumber(stored))
  local worse = redis.call('ZCOUNT', key, '(' .. fmt(group_max(g)), '+inf')
  return { worse, redis.call('ZCARD', key) }
end

-- 'entries'
local out = {}
local data = redis.call('HMGET', b.d, unpack(ARGV, A + 1))
for i = A + 1, #ARGV do
  local member = ARGV[i]
  local stored = redis.call('ZSCORE', key, member)
  local j = #out
  if stored then
    local g = group_of(tonumber(stored))
    local rank
    if ranking == 'o' then
      rank = redis.call('ZRANK', key, member) + 1
    else
      rank = first_rank(b, g, 0)
    end
    out[j + 1] = member
    out[j + 2] = stored
    out[j + 3] = rank
    out[j + 4] = data[i - A]
  else
    out[j + 1] = false
    out[j + 2] = false
    out[j + 3] = false
    out[j + 4] = false
  end
end
return out
