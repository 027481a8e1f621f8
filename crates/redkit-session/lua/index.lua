-- KEYS[1]: a user's session index `<prefix>:sess:user:{<SHA-256 of the user id>}`: a
-- sorted set of session handles scored by their absolute deadline (ms). Every call first
-- drops entries whose deadline passed more than a minute ago (the sessions live on other
-- cluster nodes, whose clocks may run a little behind this one: an entry must never
-- leave before its session), and the key expires with its last entry, so the index
-- never grows with ended sessions and needs no keyspace notifications.
-- KEYS[2]: `<index>:added`, a hash of handle -> the server time (ms) it was indexed; it
-- lives and expires with the index.
-- KEYS[3]: `<index>:revoking`, handles taken out of the index by 'take' whose sessions
-- may not be deleted yet (scored by deadline). They count as revoked at once: 'commit'
-- and every other check look at KEYS[1] only. A later 'take' returns them again, so a
-- caller that died between taking and deleting leaves nothing the next one misses.
-- KEYS[4]: `<index>:epoch`, a counter every 'take' increments: a login captures it when
-- it first indexes its new handle and its commit fails if a 'take' ran since, so a
-- login in flight during a logout everywhere ends instead of starting over. It expires
-- a day after the last 'take' (a login spanning that moment fails once).
-- ARGV[1]: operation:
--   'add' handle absolute limit policy grace-ms (dead seen)...  adds the handle with
--        deadline now + absolute (ms), or exactly at `@<ms>` when absolute has that
--        form, drops the dead handles that are stale (see 'prune'), then over `limit`
--        (0 = none)
--        either refuses (policy 'r': reply {-1}) or revokes the oldest others (policy
--        'e': into KEYS[3], the caller deletes them and confirms with 'revoked').
--        Reply: {deadline, epoch, n, n evicted handles..., unfinished...}: the handles
--        after the evicted ones are in KEYS[3] from an earlier caller that died before
--        deleting their sessions; the caller deletes them and confirms with 'revoked'.
--   'remove' handle...   Reply: how many were there (for ended sessions).
--   'revoke' handle...   like 'remove', into KEYS[3] until 'revoked' (live sessions).
--   'list'               Reply: handle, deadline, seen triples, oldest first (`seen`:
--                        the entry's KEYS[2] value, '0' when it has none).
--   'prune' grace-ms (handle seen)...  drops handles whose sessions the caller found
--        gone, but only stale ones: indexed at least grace-ms ago (a younger one may
--        belong to a move whose session is still being written) and unchanged since
--        the caller listed them (a move that commits bumps its entries, so a listing
--        that saw the key missing before the move wrote it cannot drop it afterwards).
--        Reply: how many were indexed.
--   'take' keep          moves every handle but `keep` to KEYS[3]; replies them with
--                        those KEYS[3] already held.
--   'revoked' handle...  drops handles from KEYS[3] once their sessions are deleted.
--   'commit' old new [epoch]  a move's commit point: 1 when both handles are indexed
--                        (and bumps both entries, see 'prune'); else drops `new` and
--                        replies 0 (the old session was revoked while it was being
--                        copied), or -1 when `epoch` is given and a 'take' ran since
--                        (logged out everywhere). A login or a tower create passes its
--                        new handle twice. A rotation passes its epoch as well: when
--                        only its new handle left the index and no 'take' ran, the
--                        old one goes to KEYS[3] too (the revocation was of this
--                        session) and the reply is 2.
--   'finish' old         after a rotation deleted the old session: 1 when `old` was
--                        still indexed (and drops it); 0 when a revocation took it
--                        meanwhile, so the rotation must end the new session too.
local key, added, revoking, epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- how long after its deadline an entry stays (cross-node clock skew, see above)
local margin = 60000

-- removes handles from both keys, in chunks (unpack has a limit); replies how many
-- were indexed
local function drop(handles)
  local n = 0
  for i = 1, #handles, 1000 do
    local chunk = { unpack(handles, i, math.min(i + 999, #handles)) }
    redis.call('HDEL', added, unpack(chunk))
    n = n + redis.call('ZREM', key, unpack(chunk))
  end
  return n
end

-- takes handles out of the index into KEYS[3] (their sessions are still to delete);
-- replies how many were indexed
local function revoke(handles)
  for _, h in ipairs(handles) do
    local score = redis.call('ZSCORE', key, h)
    if score then redis.call('ZADD', revoking, score, h) end
  end
  return drop(handles)
end

-- whether an entry a caller found without a session may be dropped (see 'prune')
local function stale(h, seen, grace)
  local at = redis.call('HGET', added, h) or '0'
  return at == seen and tonumber(seen) + grace <= now
end

-- marks an entry as changed for callers that listed it earlier (see 'prune')
local function bump(h)
  local at = tonumber(redis.call('HGET', added, h)) or 0
  redis.call('HSET', added, h, math.max(now, at + 1))
end

drop(redis.call('ZRANGEBYSCORE', key, '-inf', now - margin))
redis.call('ZREMRANGEBYSCORE', revoking, '-inf', now - margin)

local function settle()
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', key, tonumber(last[2]) + margin)
    redis.call('PEXPIREAT', added, tonumber(last[2]) + margin)
  else
    redis.call('DEL', added)
  end
  local top = redis.call('ZRANGE', revoking, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', revoking, tonumber(top[2]) + margin) end
end

if op == 'add' then
  local handle, limit, grace = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[6])
  local dead = {}
  for i = 7, #ARGV - 1, 2 do
    if ARGV[i] ~= handle and stale(ARGV[i], ARGV[i + 1], grace) then dead[#dead + 1] = ARGV[i] end
  end
  drop(dead)
  if limit > 0 and ARGV[5] == 'r' and not redis.call('ZSCORE', key, handle)
      and redis.call('ZCARD', key) >= limit then
    settle()
    return { -1 }
  end
  local deadline
  if string.sub(ARGV[3], 1, 1) == '@' then
    deadline = tonumber(string.sub(ARGV[3], 2))
  else
    deadline = now + tonumber(ARGV[3])
  end
  redis.call('ZADD', key, deadline, handle)
  redis.call('HSET', added, handle, now)
  local out = { deadline, redis.call('GET', epoch) or '0', 0 }
  local evicted = { [handle] = true }
  if limit > 0 then
    local over = redis.call('ZCARD', key) - limit
    if over > 0 then
      -- the oldest, never the session being added (equal deadlines can rank it first)
      for _, h in ipairs(redis.call('ZRANGE', key, 0, over)) do
        if h ~= handle and #out <= over + 2 then
          out[#out + 1] = h
          evicted[h] = true
        end
      end
      revoke({ unpack(out, 4) })
    end
  end
  out[3] = #out - 3
  -- revocations an earlier caller took and did not finish (it died before deleting the
  -- sessions): this caller finishes them, so they do not live on until the next 'take'
  for _, h in ipairs(redis.call('ZRANGE', revoking, 0, -1)) do
    if not evicted[h] and not redis.call('ZSCORE', key, h) then out[#out + 1] = h end
  end
  settle()
  return out
end

if op == 'remove' then
  local n = drop({ unpack(ARGV, 2) })
  settle()
  return n
end

if op == 'revoke' then
  local n = revoke({ unpack(ARGV, 2) })
  settle()
  return n
end

if op == 'list' then
  local out = {}
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
    out[#out + 1] = redis.call('HGET', added, all[i]) or '0'
  end
  return out
end

if op == 'prune' then
  local grace, gone = tonumber(ARGV[2]), {}
  for i = 3, #ARGV - 1, 2 do
    if stale(ARGV[i], ARGV[i + 1], grace) then gone[#gone + 1] = ARGV[i] end
  end
  local n = drop(gone)
  settle()
  return n
end

if op == 'finish' then
  if not redis.call('ZSCORE', key, ARGV[2]) then return 0 end
  drop({ ARGV[2] })
  settle()
  return 1
end

if op == 'commit' then
  if ARGV[4] and ARGV[4] ~= (redis.call('GET', epoch) or '0') then
    drop({ ARGV[3] })
    settle()
    return -1
  end
  local has_old = redis.call('ZSCORE', key, ARGV[2])
  if has_old and redis.call('ZSCORE', key, ARGV[3]) then
    bump(ARGV[2])
    bump(ARGV[3])
    settle()
    return 1
  end
  if has_old and ARGV[4] and ARGV[2] ~= ARGV[3] then
    -- a rotation's new handle was revoked or evicted (listed while the rotation ran),
    -- and no logout everywhere (which might keep the old one) ran: that revocation
    -- was of this session, so the old handle is revoked too
    revoke({ ARGV[2] })
    settle()
    return 2
  end
  drop({ ARGV[3] })
  settle()
  return 0
end

if op == 'revoked' then
  for i = 2, #ARGV, 1000 do
    redis.call('ZREM', revoking, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  settle()
  return 0
end

-- 'take'
redis.call('INCR', epoch)
redis.call('PEXPIRE', epoch, 86400000)
local out, seen = {}, {}
local taken = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
for i = 1, #taken, 2 do
  local handle = taken[i]
  if handle ~= ARGV[2] then
    out[#out + 1] = handle
    seen[handle] = true
    redis.call('ZADD', revoking, taken[i + 1], handle)
  end
end
drop(out)
-- left by a caller that took them and did not confirm their deletion: still revoked
-- (`keep` included: an earlier revocation did not keep it)
for _, handle in ipairs(redis.call('ZRANGE', revoking, 0, -1)) do
  if not seen[handle] then out[#out + 1] = handle end
end
settle()
return out
