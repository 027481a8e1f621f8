-- KEYS[1]: board base key (see common.lua). ARGV[9]: scope, ARGV[10]: operation:
--   'range' start count | 'around' member n | 'score' lo hi offset count (stored values)
--   | 'entries' member... | 'count' | 'pct' member
-- Replies: entries as flat member, stored score, rank, data; 'entries' puts false in
-- place of a missing member's four fields; 'count' an integer; 'pct' {worse, total}.
local key = scope_key(ARGV[9])
local op = ARGV[10]

if op == 'range' then
  local start = tonumber(ARGV[11])
  local flat = redis.call('ZRANGE', key, start, start + tonumber(ARGV[12]) - 1, 'WITHSCORES')
  return ranked(key, flat, start)
end

if op == 'around' then
  local pos = redis.call('ZRANK', key, ARGV[11])
  if not pos then return {} end
  local n = tonumber(ARGV[12])
  local last = redis.call('ZCARD', key) - 1
  local start = pos - n
  if start < 0 then start = 0 end
  local stop = start + 2 * n
  if stop > last then
    stop = last
    start = stop - 2 * n
    if start < 0 then start = 0 end
  end
  return ranked(key, redis.call('ZRANGE', key, start, stop, 'WITHSCORES'), start)
end

if op == 'score' then
  local flat = redis.call('ZRANGEBYSCORE', key, ARGV[11], ARGV[12], 'WITHSCORES', 'LIMIT',
    ARGV[13], ARGV[14])
  if #flat == 0 then return {} end
  return ranked(key, flat, redis.call('ZRANK', key, flat[1]))
end

if op == 'count' then
  return redis.call('ZCARD', key)
end

if op == 'pct' then
  local stored = redis.call('ZSCORE', key, ARGV[11])
  if not stored then return {} end
  local g = group_of(tonumber(stored))
  local worse = redis.call('ZCOUNT', key, '(' .. fmt(group_max(g)), '+inf')
  return { worse, redis.call('ZCARD', key) }
end

-- 'entries'
local out = {}
local data = redis.call('HMGET', key .. ':data', unpack(ARGV, 11))
for i = 11, #ARGV do
  local member = ARGV[i]
  local stored = redis.call('ZSCORE', key, member)
  local j = #out
  if stored then
    local g = group_of(tonumber(stored))
    local rank
    if ranking == 'o' then
      rank = redis.call('ZRANK', key, member) + 1
    else
      rank = first_rank(key, g, 0)
    end
    out[j + 1] = member
    out[j + 2] = stored
    out[j + 3] = rank
    out[j + 4] = data[i - 10]
  else
    out[j + 1] = false
    out[j + 2] = false
    out[j + 3] = false
    out[j + 4] = false
  end
end
return out
