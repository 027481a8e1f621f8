-- KEYS[1]: jobs, KEYS[2]: delayed, KEYS[3]: lease, KEYS[4]: dead, KEYS[5]: completed,
-- KEYS[6..9]: ready lists by level; `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: state ('waiting', 'delayed', 'active', 'dead', 'completed'), ARGV[2]: offset,
-- ARGV[3]: most jobs (bounded by the caller).
-- One page of a state's jobs, oldest first (waiting: highest level first, in order).
-- Reply: id, envelope pairs (removed jobs skipped).
local state, offset, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = {}
if state == 'waiting' then
  for level = 0, 3 do
    if #ids >= limit then break end
    local len = redis.call('LLEN', KEYS[6 + level])
    if offset >= len then
      offset = offset - len
    else
      local got = redis.call('LRANGE', KEYS[6 + level], offset, offset + limit - #ids - 1)
      for _, id in ipairs(got) do ids[#ids + 1] = id end
      offset = 0
    end
  end
else
  local key = ({delayed = KEYS[2], active = KEYS[3], dead = KEYS[4], completed = KEYS[5]})[state]
  if not key then return redis.error_reply('unknown state ' .. state) end
  ids = redis.call('ZRANGE', key, offset, offset + limit - 1)
  if state == 'delayed' then
    for i, m in ipairs(ids) do ids[i] = string.sub(m, 2) end
  end
end
local out = {}
if #ids == 0 then return out end
local envs = redis.call('HMGET', KEYS[1], unpack(ids))
for i, id in ipairs(ids) do
  if envs[i] then
    out[#out + 1] = id
    out[#out + 1] = envs[i]
  end
end
return out
