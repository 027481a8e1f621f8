-- KEYS[1]: a tag `<prefix>:cache:<ns>:g<gen>:tag:{<tag>}`: a sorted set of the keys
-- carrying it, scored by when each entry expires (server time, ms). Every call drops
-- members whose entries have expired and the key expires with its last member, so tag
-- sets never grow with dead entries.
-- ARGV[1]: 'add' ttl-ms key...  tags keys whose entries live ttl-ms from now.
--          'take'               removes the tag; replies the keys still alive.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] == 'take' then
  local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
  redis.call('DEL', KEYS[1])
  return keys
end
local until_ms = now + tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'GT', until_ms, ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return #ARGV - 2
