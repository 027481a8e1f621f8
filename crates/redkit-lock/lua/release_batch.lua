-- KEYS[i] lock key of request i (i = 1..n)
-- ARGV[2i-1] owner token of request i, ARGV[2i] the channel its waiters listen on
-- release.lua for n requests at once, in order. Returns {r1, r2, ...}: 1 released, 0 not
-- held by that owner (nothing deleted). Packed with MessagePack (one bulk reply). A lock
-- key holding another type (overwritten by someone else) is not held by anyone: its GET
-- runs under pcall, so it answers 0 instead of failing the batch after the releases
-- before it and leaving the ones after it held.
local out = {}
for i = 1, #KEYS do
  if redis.pcall('GET', KEYS[i]) == ARGV[2 * i - 1] then
    redis.call('DEL', KEYS[i])
    redis.call('PUBLISH', ARGV[2 * i], 'released')
    out[i] = 1
  else
    out[i] = 0
  end
end
return cmsgpack.pack(out)
