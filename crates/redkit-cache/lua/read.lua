-- KEYS[1]: a write-behind log (stream), KEYS[2]: its flush lease `<log>:owner`; one hash
-- tag.
-- ARGV[1]: the flusher's lease token (also its consumer name), ARGV[2]: lease ttl ms,
-- ARGV[3]: consumer group, ARGV[4]: how many records, ARGV[5]: '1' to delete the group's
-- other consumers that hold nothing (after a takeover).
-- Reads the next records to flush, only while the token holds the lease, which it
-- renews in the same step: a flusher that lost its lease reads nothing, so no record is
-- ever delivered to a flusher that cannot settle it. Records delivered earlier and never
-- acknowledged, by any flusher (a dead or deposed owner, or this one after a failed
-- settle), are claimed first on every call: they are older than any record not yet
-- delivered, so each key's records stay in version order. Only when none is pending are
-- new records read.
-- Reply: false when the lease is not held; else {records, ids of pending records that
-- were deleted from the log}, records as {id, {field, value, ...}} in id order.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local claimed = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[3], ARGV[1], 0, '0-0', 'COUNT', ARGV[4])
if claimed.err then
  if not string.find(claimed.err, 'NOGROUP', 1, true) then return redis.error_reply(claimed.err) end
  -- a new log (or one that was deleted): its group reads from the start
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[3], '0', 'MKSTREAM')
  claimed = {'0-0', {}, {}}
end
if ARGV[5] == '1' then
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[3])) do
    local name, pending
    for j = 1, #c, 2 do
      if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then pending = c[j + 1] end
    end
    if name ~= ARGV[1] and pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[3], name)
    end
  end
end
local gone = claimed[3] or {}
if #claimed[2] > 0 or #gone > 0 then return {claimed[2], gone} end
local read = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[1], 'COUNT', ARGV[4],
  'STREAMS', KEYS[1], '>')
if not read then return {{}, {}} end
return {read[1][2], {}}
