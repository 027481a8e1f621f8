-- KEYS[1]: the stream. ARGV[1]: group, ARGV[2]: idle ms.
-- Removes consumers idle for at least ARGV[2] that hold no pending entries. Deleting a
-- consumer deletes its pending entries (they would never be delivered again), so the
-- check and the delete happen in one step.
-- Reply: the removed consumers' names.
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
