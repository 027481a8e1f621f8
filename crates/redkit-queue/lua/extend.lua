-- KEYS[1]: lease, KEYS[2]: inflight; `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: visibility ms, then id, token pairs.
-- Extends the leases whose delivery token still holds to now + visibility (the
-- heartbeat of a worker's jobs). Reply: per job 1 extended, 0 lease lost.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV - 1, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
