-- KEYS[1]: jobs, KEYS[2]: delayed, KEYS[3]: lease (zset id -> lease end ms), KEYS[4]:
-- inflight (hash id -> delivery token), KEYS[5]: meta, KEYS[6]: signal, KEYS[7]: dead,
-- KEYS[8]: errors (hash id -> last error), KEYS[9]: events (stream), KEYS[10..13]: ready
-- lists by level, KEYS[14]: completed (zset id -> ms), KEYS[15]: results (hash id ->
-- result), KEYS[16]: progress (hash id -> last report), KEYS[17]: uniques (hash unique
-- key -> holder id), KEYS[18]: removed (hash id -> levels of ready lists still holding a
-- removed job's id); all `<prefix>:queue:{<name>}:…`.
-- ARGV[1]: most jobs to take (0: none), ARGV[2]: visibility ms, ARGV[3]: this delivery's
-- token, ARGV[4]: most due jobs to promote, ARGV[5]: most expired leases to recover,
-- ARGV[6]: events stream max length (0 = no events), ARGV[7]: keep completed jobs ('1')
-- or delete them ('0'), ARGV[8]: most completed kept (0 = no limit), ARGV[9]: longest
-- kept ms (0 = no limit), ARGV[10]: most old jobs trimmed, ARGV[11]: sweep ('1': promote
-- and recover), ARGV[12]: most dead jobs kept (0 = no limit, -1 = none: deleted), then
-- per completed job 4 slots: id, token, result, the unique key it holds until it
-- finishes ('' = none).
-- One worker cycle in one step: completes the jobs whose delivery token still holds (a
-- worker whose lease was lost cannot complete a job that was delivered again) and keeps
-- or deletes them (trimmed, bounded); moves due delayed jobs to their ready lists and
-- jobs whose lease ran out back to the head of theirs (an attempt counted; dead past
-- their attempts); then leases up to n ready jobs, highest level first, until now +
-- visibility. A ready id is leased only while it is waiting: never one already leased
-- (its token is not overwritten), never twice in one call, never the stale place in line
-- of a removed job. A job that finishes gives back its unique key if it still holds it.
-- Every step is bounded. Every key's type is checked before the first write, so an
-- error leaves the queue as it was (no job popped and leased to nobody).
-- Reply: ms until the next delayed job or lease end (-1 none), the number of completions
-- m, m statuses (1 done, 0 lease lost), then id, envelope pairs.
local types = {'hash', 'zset', 'zset', 'hash', 'hash', 'list', 'zset', 'hash', 'stream',
  'list', 'list', 'list', 'list', 'zset', 'hash', 'hash', 'hash', 'hash'}
for i, want in ipairs(types) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. got .. ', not a ' .. want)
  end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local events = tonumber(ARGV[6])
local function event(kind, id, extra)
  if events > 0 then
    redis.call('XADD', KEYS[9], 'MAXLEN', '~', events, '*', 'event', kind, 'id', id,
      'detail', extra or '')
  end
end
-- gives back a unique key if it still names the job
local function release_unique(key, id)
  if key and key ~= '' and redis.call('HGET', KEYS[17], key) == id then
    redis.call('HDEL', KEYS[17], key)
  end
end
-- whether stored data is a job's envelope (format 1, a priority level 0..3)
local function is_job(env)
  return #env >= 33 and string.byte(env, 1) == 1 and string.byte(env, 8) <= 3
end
-- the unique key an envelope holds until its job finishes (header byte 30: mode 1)
local function unique_of(env)
  if not is_job(env) or string.byte(env, 31) ~= 1 then return nil end
  return string.sub(env, 34, 33 + struct.unpack('>I2', env, 32))
end
-- completions
local keep = ARGV[7] == '1'
local acks, done = {}, {}
local held = {}
if #ARGV >= 16 then
  local ids = {}
  for i = 13, #ARGV - 3, 4 do ids[#ids + 1] = ARGV[i] end
  held = redis.call('HMGET', KEYS[4], unpack(ids))
end
-- deletes what a job leaves besides its envelope: results, errors, progress
local function forget(ids)
  redis.call('HDEL', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[8], unpack(ids))
  redis.call('HDEL', KEYS[15], unpack(ids))
  if redis.call('EXISTS', KEYS[16]) == 1 then redis.call('HDEL', KEYS[16], unpack(ids)) end
end
local i = 13
while i + 3 <= #ARGV do
  local id = ARGV[i]
  if held[(i - 9) / 4] == ARGV[i + 1] then
    done[#done + 1] = id
    if keep then
      redis.call('ZADD', KEYS[14], now, id)
      redis.call('HSET', KEYS[15], id, ARGV[i + 2])
    end
    release_unique(ARGV[i + 3], id)
    event('completed', id)
    acks[#acks + 1] = 1
  else
    acks[#acks + 1] = 0
  end
  i = i + 4
end
if #done > 0 then
  redis.call('ZREM', KEYS[3], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
  redis.call('HDEL', KEYS[8], unpack(done))
  if not keep then
    redis.call('HDEL', KEYS[1], unpack(done))
    if redis.call('EXISTS', KEYS[16]) == 1 then redis.call('HDEL', KEYS[16], unpack(done)) end
  else
    local limit = tonumber(ARGV[10])
    local old = {}
    if tonumber(ARGV[9]) > 0 then
      old = redis.call('ZRANGEBYSCORE', KEYS[14], '-inf', now - tonumber(ARGV[9]), 'LIMIT', 0, limit)
    end
    local most = tonumber(ARGV[8])
    if most > 0 and #old < limit then
      local excess = redis.call('ZCARD', KEYS[14]) - #old - most
      if excess > 0 then
        local more = redis.call('ZRANGE', KEYS[14], #old, #old + math.min(excess, limit - #old) - 1)
        for _, id in ipairs(more) do old[#old + 1] = id end
      end
    end
    if #old > 0 then
      redis.call('ZREM', KEYS[14], unpack(old))
      forget(old)
    end
  end
end
-- the sweep
if ARGV[11] == '1' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[4])
  if #due > 0 then
    for _, m in ipairs(due) do
      redis.call('RPUSH', KEYS[10 + string.byte(m, 1) - 48], string.sub(m, 2))
    end
    redis.call('ZREM', KEYS[2], unpack(due))
  end
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, ARGV[5])
  for _, id in ipairs(expired) do
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    local env = redis.call('HGET', KEYS[1], id)
    if env then
      local why, dead = nil, true
      if not is_job(env) then
        -- not a job (written by something else): dead at once
        why = 'stalled, and its stored data is not a job'
      else
        local attempts = struct.unpack('>I2', env, 2) + 1
        local stalls = struct.unpack('>I2', env, 4) + 1
        env = string.sub(env, 1, 1) .. struct.pack('>I2I2', attempts, stalls) .. string.sub(env, 6)
        redis.call('HSET', KEYS[1], id, env)
        why = 'stalled: the lease ran out (' .. stalls .. ' time(s))'
        dead = attempts >= struct.unpack('>I2', env, 6)
      end
      redis.call('HSET', KEYS[8], id, why)
      if dead then
        release_unique(unique_of(env), id)
        local most = tonumber(ARGV[12])
        if most < 0 then
          forget({id})
        else
          redis.call('ZADD', KEYS[7], now, id)
          local excess = redis.call('ZCARD', KEYS[7]) - most
          if most > 0 and excess > 0 then
            local old = redis.call('ZRANGE', KEYS[7], 0, math.min(excess, tonumber(ARGV[10])) - 1)
            redis.call('ZREM', KEYS[7], unpack(old))
            forget(old)
          end
        end
        event('dead', id, why)
      else
        redis.call('LPUSH', KEYS[10 + string.byte(env, 8)], id)
        event('stalled', id, why)
      end
    end
  end
end
local reply = {-1, #acks}
for _, a in ipairs(acks) do reply[#reply + 1] = a end
if redis.call('HGET', KEYS[5], 'paused') ~= '1' then
  local want = tonumber(ARGV[1])
  local ids, levels = {}, {}
  for level = 0, 3 do
    if #ids >= want then break end
    local got = redis.call('LPOP', KEYS[10 + level], want - #ids)
    if got then
      for _, id in ipairs(got) do
        ids[#ids + 1] = id
        levels[#ids] = tostring(level)
      end
    end
  end
  if #ids > 0 then
    local envs = redis.call('HMGET', KEYS[1], unpack(ids))
    local leased = redis.call('HMGET', KEYS[4], unpack(ids))
    -- places in line left by removed jobs: id -> levels
    local stale, changed = {}, {}
    if redis.call('EXISTS', KEYS[18]) == 1 then
      local s = redis.call('HMGET', KEYS[18], unpack(ids))
      for n, id in ipairs(ids) do
        if s[n] and stale[id] == nil then stale[id] = s[n] end
      end
    end
    local until_ms = now + tonumber(ARGV[2])
    local leases, tokens, l, r, seen = {}, {}, 0, #reply, {}
    for n, id in ipairs(ids) do
      local s = stale[id]
      local at = s and string.find(s, levels[n], 1, true)
      if at then
        -- a removed job's place: skipped, once
        stale[id] = string.sub(s, 1, at - 1) .. string.sub(s, at + 1)
        changed[id] = true
      elseif envs[n] and not leased[n] and not seen[id] then
        seen[id] = true
        leases[l + 1] = until_ms
        leases[l + 2] = id
        tokens[l + 1] = id
        tokens[l + 2] = ARGV[3]
        l = l + 2
        reply[r + 1] = id
        reply[r + 2] = envs[n]
        r = r + 2
      end
      -- else: no such job any more, or a second place in line of a job that is
      -- leased: dropped
    end
    for id in pairs(changed) do
      if stale[id] == '' then
        redis.call('HDEL', KEYS[18], id)
      else
        redis.call('HSET', KEYS[18], id, stale[id])
      end
    end
    if l > 0 then
      redis.call('ZADD', KEYS[3], unpack(leases))
      redis.call('HSET', KEYS[4], unpack(tokens))
    end
  end
  -- work left: keep one wake token so another idle worker fetches too
  if want > 0 and redis.call('LLEN', KEYS[6]) == 0 then
    for level = 0, 3 do
      if redis.call('LLEN', KEYS[10 + level]) > 0 then
        redis.call('RPUSH', KEYS[6], 1)
        break
      end
    end
  end
end
local next_at = nil
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then next_at = tonumber(first[2]) end
first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] and (not next_at or tonumber(first[2]) < next_at) then next_at = tonumber(first[2]) end
if next_at then reply[1] = math.max(0, next_at - now) end
return reply
