-- KEYS[i] lock key of request i (i = 1..n)
-- ARGV[2i-1] owner token of request i, ARGV[2i] the channel its waiters listen on
-- release.lua for n requests at once, in order. Returns {r1, r2, ...}: 1 released, 0 not
-- held by that owner (nothing deleted). Packed with MessagePack (one bulk reply).
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2 * i - 1] then
    redis.call('DEL', KEYS[i])
    redis.call('PUBLISH', ARGV[2 * i], 'released')
    out[i] = 1
  else
    out[i] = 0
  end
end
return cmsgpack.pack(out)
