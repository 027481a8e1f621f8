-- KEYS[1]: scheduler (the schedule owner's token); `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: owner token, ARGV[2]: lease ms (0: give the lease back).
-- Takes the queue's scheduler lease when it is free, keeps it when the owner holds it, or
-- gives it back. Reply: {1 held or 0 not, server time in ms}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return {0, now}
end
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, now}
end
return {0, now}
