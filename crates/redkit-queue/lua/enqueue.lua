-- KEYS[1]: seq (id counter), KEYS[2]: jobs (hash id -> envelope), KEYS[3]: delayed (zset
-- of <level><id> by due ms), KEYS[4]: signal (wake list), KEYS[5]: completed, KEYS[6]:
-- dead, KEYS[7]: schedules (hash schedule -> last occurrence ms), KEYS[8..11]: ready lists
-- by level (0 first), KEYS[12..]: unique keys; all `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: job count n, ARGV[2]: schedule name ('' = none), ARGV[3]: its occurrence ms,
-- then per job 6 slots: custom id ('' = next number), level, delay ms (0 = ready now),
-- unique key index into KEYS[12..] (0 = none), unique ttl ms (0 = until the job
-- finishes), envelope.
-- Adds the jobs: a custom id already present, or a unique key held by a live job, is a
-- duplicate and returns the existing id. With a schedule, adds nothing unless the
-- occurrence is later than the last one recorded for it, records it, and makes the jobs
-- due at it (an occurrence is enqueued once, whoever fires it). Wakes one idle worker
-- when the ready lists were empty. Reply: per job, status (1 added, 0 duplicate) and id;
-- empty when the occurrence was fired already.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local n = tonumber(ARGV[1])
local due_at = nil
if ARGV[2] ~= '' then
  local last = redis.call('HGET', KEYS[7], ARGV[2])
  if last and tonumber(last) >= tonumber(ARGV[3]) then return {} end
  redis.call('HSET', KEYS[7], ARGV[2], ARGV[3])
  due_at = tonumber(ARGV[3])
end
local fresh = 0
for i = 1, n do
  if ARGV[4 + (i - 1) * 6] == '' then fresh = fresh + 1 end
end
local next_id = 0
if fresh > 0 then next_id = redis.call('INCRBY', KEYS[1], fresh) - fresh end
local function live(id)
  return redis.call('HEXISTS', KEYS[2], id) == 1
    and not redis.call('ZSCORE', KEYS[5], id) and not redis.call('ZSCORE', KEYS[6], id)
end
local out = {}
local woke = false
for i = 1, n do
  local at = 4 + (i - 1) * 6
  local id = ARGV[at]
  local duplicate = nil
  if id == '' then
    next_id = next_id + 1
    id = tostring(next_id)
  elseif redis.call('HEXISTS', KEYS[2], id) == 1 then
    duplicate = id
  end
  local uk = tonumber(ARGV[at + 3])
  if not duplicate and uk > 0 then
    local key = KEYS[11 + uk]
    local holder = redis.call('GET', KEYS[11 + uk])
    if holder and (tonumber(ARGV[at + 4]) > 0 or live(holder)) then
      duplicate = holder
    else
      if tonumber(ARGV[at + 4]) > 0 then
        redis.call('SET', key, id, 'PX', ARGV[at + 4])
      else
        redis.call('SET', key, id)
      end
    end
  end
  if duplicate then
    out[#out + 1] = 0
    out[#out + 1] = duplicate
  else
    local level = tonumber(ARGV[at + 1])
    redis.call('HSET', KEYS[2], id, ARGV[at + 5])
    local due = now + tonumber(ARGV[at + 2])
    if due_at then due = due_at end
    if due > now then
      redis.call('ZADD', KEYS[3], due, level .. id)
    else
      redis.call('RPUSH', KEYS[8 + level], id)
      woke = true
    end
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
if woke and redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], 1) end
return out
