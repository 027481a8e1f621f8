-- KEYS[2i-1] lock key of request i, KEYS[2i] its fencing counter (i = 1..n)
-- ARGV[2i-1] owner token of request i, ARGV[2i] its ttl in milliseconds
-- acquire.lua for n requests at once, in order (two requests for one resource: the first
-- wins). Returns {s1, n1, s2, n2, ...}: s 1 with the fencing token, s 0 with the holder's
-- remaining ttl, or s -1 with a reason (1: the lock key is not a string; 2: the fencing
-- counter cannot be incremented). Each request stands alone: one whose counter fails is
-- undone (its lock key, set just before and absent until then, is deleted) and the
-- others go on, so every caller gets its lock or an error with nothing held. The SETs
-- cannot fail for a key's type; an out-of-memory refusal can only hit the first write,
-- before anything was written. Packed with MessagePack (one bulk reply, cheap to read).
local out = {}
for i = 1, #KEYS / 2 do
  local lock, fence = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('SET', lock, ARGV[2 * i - 1], 'NX', 'PX', ARGV[2 * i]) then
    local n = redis.pcall('INCR', fence)
    if type(n) == 'table' then
      redis.call('DEL', lock)
      out[2 * i - 1] = -1
      out[2 * i] = 2
    else
      out[2 * i - 1] = 1
      out[2 * i] = n
    end
  else
    local ttl = redis.call('PTTL', lock)
    if ttl == -1 and redis.call('TYPE', lock).ok ~= 'string' then
      out[2 * i - 1] = -1
      out[2 * i] = 1
    else
      out[2 * i - 1] = 0
      out[2 * i] = ttl
    end
  end
end
return cmsgpack.pack(out)
