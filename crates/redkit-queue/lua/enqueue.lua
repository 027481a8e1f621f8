-- KEYS[1]: seq (id counter), KEYS[2]: jobs (hash id -> envelope), KEYS[3]: delayed (zset
-- of <level><id> by due ms), KEYS[4]: signal (wake list), KEYS[5]: completed, KEYS[6]:
-- dead, KEYS[7]: schedules (hash schedule -> last occurrence ms), KEYS[8..11]: ready lists
-- by level (0 first), KEYS[12]: uniques (hash unique key -> id of the job holding it until
-- it finishes), KEYS[13..]: unique keys of time-bound holds (string: id, PX); all
-- `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: job count n, ARGV[2]: schedule name ('' = none), ARGV[3]: its occurrence ms,
-- then per job 7 slots: custom id ('' = next number), level, delay ms (0 = ready now),
-- unique key index into KEYS[13..] (0 = none), unique ttl ms (0 = until the job
-- finishes), unique key, envelope.
-- Adds the jobs: a custom id already present, or a unique key held by a live job, is a
-- duplicate and returns the existing id. With a schedule, adds nothing unless the
-- occurrence is later than the last one recorded for it, records it, and makes the jobs
-- due at it (an occurrence is enqueued once, whoever fires it). Wakes one idle worker
-- when the ready lists were empty. Reply: per job, status (1 added, 0 duplicate) and id;
-- empty when the occurrence was fired already.
-- All or nothing: every key's type is checked and every job decided before the first
-- write, so an error (a key of another type) leaves the queue as it was.
local types = {'string', 'hash', 'zset', 'list', 'zset', 'zset', 'hash', 'list', 'list',
  'list', 'list', 'hash'}
for i = 1, #KEYS do
  local want = types[i] or 'string'
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local n = tonumber(ARGV[1])
local due_at = nil
if ARGV[2] ~= '' then
  local last = redis.call('HGET', KEYS[7], ARGV[2])
  if last and tonumber(last) >= tonumber(ARGV[3]) then return {} end
  due_at = tonumber(ARGV[3])
end
local function live(id)
  return redis.call('HEXISTS', KEYS[2], id) == 1
    and not redis.call('ZSCORE', KEYS[5], id) and not redis.call('ZSCORE', KEYS[6], id)
end
-- decide every job first: ids this batch adds, unique keys it takes
local fresh = 0
for i = 1, n do
  if ARGV[4 + (i - 1) * 7] == '' then fresh = fresh + 1 end
end
local next_id = 0
if fresh > 0 then
  local base = redis.call('GET', KEYS[1])
  next_id = tonumber(base or '0')
end
local ids, dups, adding, claimed = {}, {}, {}, {}
for i = 1, n do
  local at = 4 + (i - 1) * 7
  local id = ARGV[at]
  local duplicate = nil
  if id == '' then
    next_id = next_id + 1
    id = tostring(next_id)
  elseif adding[id] or redis.call('HEXISTS', KEYS[2], id) == 1 then
    duplicate = id
  end
  local uk, ttl, name = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]), ARGV[at + 5]
  if not duplicate and uk > 0 then
    if claimed[name] then
      duplicate = claimed[name]
    else
      local until_done = redis.call('HGET', KEYS[12], name)
      if until_done and live(until_done) then
        duplicate = until_done
      else
        local timed = redis.call('GET', KEYS[12 + uk])
        if timed and (ttl > 0 or live(timed)) then duplicate = timed end
      end
    end
    if not duplicate then claimed[name] = id end
  end
  ids[i] = id
  dups[i] = duplicate
  if not duplicate then adding[id] = true end
end
-- then write
if fresh > 0 then redis.call('INCRBY', KEYS[1], fresh) end
if due_at then redis.call('HSET', KEYS[7], ARGV[2], ARGV[3]) end
local out = {}
local woke = false
for i = 1, n do
  local at = 4 + (i - 1) * 7
  local id = ids[i]
  if dups[i] then
    out[#out + 1] = 0
    out[#out + 1] = dups[i]
  else
    local uk, ttl = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
    if uk > 0 then
      if ttl > 0 then
        redis.call('SET', KEYS[12 + uk], id, 'PX', ttl)
      else
        redis.call('HSET', KEYS[12], ARGV[at + 5], id)
      end
    end
    local level = tonumber(ARGV[at + 1])
    redis.call('HSET', KEYS[2], id, ARGV[at + 6])
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
