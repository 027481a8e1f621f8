-- KEYS[1]: the stream `<prefix>:stream:{<name>}`.
-- ARGV[1]: group, ARGV[2]: consumer, ARGV[3]: the cursor (read the consumer's pending
-- entries with ids above it; '0-0' for the start), ARGV[4]: count.
-- A restarted consumer's own backlog, read once: XREADGROUP from the cursor returns up to
-- `count` of the consumer's pending entries after it, each counted as a delivery. The
-- caller moves the cursor past them, so an entry whose handler runs is not read again
-- (a second read would count a delivery nobody got and dead-letter it while it runs).
-- The delivery counts come from XPENDING over exactly the ids read, for this consumer,
-- not from the head of the group's pending list. Entries deleted from the stream
-- meanwhile come back with nil fields: they are acknowledged here and left out.
-- Reply: the next cursor (the last id read; '0-0' once fewer than `count` came back,
-- i.e. the backlog is exhausted), then flat id, deliveries, {field, value, ...} triples.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local after, want = ARGV[3], tonumber(ARGV[4])
local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', key, after)
local read = (r and r[1] and r[1][2]) or {}
local out = {}
if #read > 0 then
  local counts = {}
  local pending = redis.call('XPENDING', key, group, read[1][1], read[#read][1], #read, consumer)
  for _, p in ipairs(pending) do
    counts[p[1]] = p[4]
  end
  local gone = {}
  for _, e in ipairs(read) do
    if type(e[2]) == 'table' then
      out[#out + 1] = e[1]
      out[#out + 1] = counts[e[1]] or 1
      out[#out + 1] = e[2]
    else
      gone[#gone + 1] = e[1]
    end
  end
  if #gone > 0 then
    redis.call('XACK', key, group, unpack(gone))
  end
end
local cursor = '0-0'
if #read >= want then cursor = read[#read][1] end
table.insert(out, 1, cursor)
return out
