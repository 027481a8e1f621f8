-- KEYS[1]: the stream `<prefix>:stream:{<name>}`.
-- ARGV[1]: group, ARGV[2]: consumer, ARGV[3]: min idle ms, ARGV[4]: count, ARGV[5]:
-- the cursor to start from ('0-0' for the start of the pending list).
-- Claims up to `count` entries idle for at least min-idle with XAUTOCLAIM, following its
-- cursor (one call scans a bounded window of the pending list, so it may return nothing
-- before the cursor wraps to 0-0), at most 16 calls per script so the server is never
-- blocked long; the caller continues from the returned cursor next time. Entries
-- deleted from the stream are dropped from the pending list (7.0 does it and lists them;
-- 6.2 returns them as nil, so they are acknowledged here). Each claimed entry comes with
-- its delivery count.
-- Reply: the next cursor, then flat id, deliveries, {field, value, ...} triples.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local min_idle, want = ARGV[3], tonumber(ARGV[4])
local out, got, cursor = {}, 0, ARGV[5]
for _ = 1, 16 do
  local r = redis.call('XAUTOCLAIM', key, group, consumer, min_idle, cursor, 'COUNT', want - got)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    if type(e) == 'table' and e[1] and type(e[2]) == 'table' then
      local p = redis.call('XPENDING', key, group, e[1], e[1], 1)
      out[#out + 1] = e[1]
      out[#out + 1] = p[1] and p[1][4] or 1
      out[#out + 1] = e[2]
      got = got + 1
    elseif type(e) == 'table' and e[1] then
      redis.call('XACK', key, group, e[1])
    end
  end
  if got >= want or cursor == '0-0' then break end
end
table.insert(out, 1, cursor)
return out
