-- KEYS[2i-1] lock key of request i, KEYS[2i] its fencing counter (i = 1..n)
-- ARGV[2i-1] owner token of request i, ARGV[2i] its ttl in milliseconds
-- acquire.lua for n requests at once, in order (two requests for one resource: the first
-- wins). Returns {ok1, n1, ok2, n2, ...}: ok 1 with the fencing token, or ok 0 with the
-- holder's remaining ttl. Packed with MessagePack (one bulk reply, cheap to read).
local out = {}
for i = 1, #KEYS / 2 do
  local lock, fence = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('SET', lock, ARGV[2 * i - 1], 'NX', 'PX', ARGV[2 * i]) then
    out[2 * i - 1] = 1
    out[2 * i] = redis.call('INCR', fence)
  else
    out[2 * i - 1] = 0
    out[2 * i] = redis.call('PTTL', lock)
  end
end
return cmsgpack.pack(out)
