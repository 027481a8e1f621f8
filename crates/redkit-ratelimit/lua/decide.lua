-- KEYS[(i-1)*L + j]: the state of limit j for request i (i = 1..n, j = 1..L); the keys of
--   one request share the subject's hash tag.
-- ARGV[1]: L, the number of limits; then 4 values per limit j: algorithm (1 fixed window,
--   2 sliding window, 3 sliding log, 4 GCRA / token bucket), capacity, window or emission
--   interval in microseconds, block after a denial in microseconds (0: none);
--   then one MessagePack array of 3 numbers per request: op (1 check, 2 peek, 3 penalty,
--   4 reward, 5 block, 6 reset), amount (cost, points, or block microseconds), phase in
--   microseconds. One string unpacked in C costs the server far less than three
--   arguments per request, each made a Redis and a Lua string, then parsed by tonumber.
--   Then, optionally, "1" (strict, for an explicit batch whose caller gets one answer for
--   all of it): before anything is written, every key's type is checked, and if one holds
--   another type of value (a sliding log is a sorted set, every other state a string)
--   nothing is written and every request's numbers are -2.
-- Decides the requests in order, atomically, on the server's clock. A check consumes every
-- limit or none. Returns per request and limit: remaining, reset after (us), retry after
-- (us, -1 when that limit alone would allow; the request passed when every limit says -1).
-- A request whose keys hold another type of value fails alone (before it writes
-- anything): its numbers are all -2. Nothing else can fail after a write: a write that
-- fails (out of memory, which Redis reports only for a script's first write) fails
-- inside the request's pcall, and every later write of the script is then refused the
-- same way, or succeeds once one did. The array is packed with MessagePack: one bulk reply
-- costs the server no more than an array of integers, and the client far less to read.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local L = tonumber(ARGV[1])
local base = 1 + 4 * L
local out = {}
local slow
local id, c, w, blk = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local hot = L == 1 and blk == 0 and (id == 1 or id == 4)
local items = cmsgpack.unpack(ARGV[base + 1])
if ARGV[base + 2] == '1' then
  local want = {}
  for j = 1, L do
    want[j] = tonumber(ARGV[(j - 1) * 4 + 2]) == 3 and 'zset' or 'string'
  end
  for i = 1, #KEYS do
    local t = redis.call('TYPE', KEYS[i])['ok']
    if t ~= 'none' and t ~= want[(i - 1) % L + 1] then
      for x = 1, #items * L do out[x] = -2 end
      return cmsgpack.pack(out)
    end
  end
end
-- the fixed window's INCRBY takes its cost as a string, made once per distinct cost;
-- GCRA's refilled-bucket answer is made once per distinct cost (gcra_batch)
local cost_strings, gcra_costs = {}, {}
local tol = c * w
-- the answers so far fill out[1..k]
local k = 0
for i = 1, #items / 3 do
  local r = (i - 1) * 3
  local done = false
  if hot and items[r + 1] == 1 then
    local cost = items[r + 2]
    if id == 1 then
      local cs = cost_strings[cost]
      if not cs then
        cs = int(cost)
        cost_strings[cost] = cs
      end
      done = fast_fixed(out, k, KEYS[i], now, c, w, cost, cs, items[r + 3])
    else
      local g = gcra_costs[cost]
      if not g then
        g = gcra_batch(now, tol, w, cost)
        gcra_costs[cost] = g
      end
      done = fast_gcra(out, k, KEYS[i], now, tol, w, g)
    end
  end
  if not done then
    slow = slow or general(now, L, base, items)
    for _, v in ipairs(slow(i)) do
      k = k + 1
      out[k] = v
    end
  else
    k = k + 3
  end
end
return cmsgpack.pack(out)
