-- KEYS and ARGV: see decide.lua (this file is a part of its script).
-- The hot path: a check of one fixed window or GCRA limit with no block configured, one
-- or two commands. Each writes its three numbers to out[k+1..k+3] and returns true, or
-- returns false, with the state as it found it, when the state needs the general path
-- (blocked, another type).

local function fast_fixed(out, k, key, now, c, w, cost, cs, ph)
  local shifted = now + ph % w
  local idx = math.floor(shifted / w)
  local left = (idx + 1) * w - shifted
  local base = fw_base(idx)
  local v = redis.pcall('INCRBY', key, cs)
  if type(v) ~= 'number' then
    return false
  end
  local prev = v - cost
  local count = v - base
  if v == cost or prev < base or prev >= base + FW_SPAN then
    -- a new key, or one left from an earlier window: this window starts with this cost
    count = cost
    redis.call('SET', key, base + cost, 'PXAT', math.ceil((now + left) / 1000))
  end
  if count > c then
    -- denials are free: take the units back
    redis.call('INCRBY', key, -cost)
    out[k + 1], out[k + 2], out[k + 3] = math.max(c - count + cost, 0), left, left
  else
    out[k + 1], out[k + 2], out[k + 3] = c - count, left, -1
  end
  return true
end

-- GCRA in one command when the bucket has refilled (the stored TAT is not ahead of now,
-- as for most keys most of the time): SET ... KEEPTTL GET writes now + cost*T, which then
-- fits (a cost never exceeds the capacity), and returns what was there. `g` holds what
-- depends only on the batch and the cost (see gcra_batch): cost*T, the new TAT's string,
-- its bucket's start and expiry, and the units left. A new key, or a TAT from an earlier
-- bucket, gets the expiry set. A TAT still ahead takes a second command: the later TAT, or the
-- old value put back on a denial (its expiry untouched). A block that was overwritten is
-- put back and left to the general path.
local function fast_gcra(out, k, key, now, tol, T, g)
  local v = redis.pcall('SET', key, g.s, 'KEEPTTL', 'GET')
  if type(v) == 'table' then
    return false -- another type: nothing was written
  end
  local stored = v and tat_parse(v)
  if not stored and v then
    local till = blocked_until(v)
    if till and till > now then
      block_string(key, till)
      return false
    end
  end
  if not stored or stored <= now then
    if not stored or stored < g.bucket then
      redis.call('PEXPIREAT', key, g.expiry)
    end
    out[k + 1], out[k + 2], out[k + 3] = g.remaining, g.inc, -1
    return true
  end
  local new = stored + g.inc
  if new - now <= tol then
    tat_save(key, stored, new, tol)
    out[k + 1], out[k + 2], out[k + 3] = math.floor((tol - (new - now)) / T), new - now, -1
  else
    redis.call('SET', key, v, 'KEEPTTL')
    out[k + 1], out[k + 2], out[k + 3] =
      math.max(math.floor((tol - (stored - now)) / T), 0), stored - now, new - tol - now
  end
  return true
end

-- What fast_gcra needs of a refilled bucket for one cost, made once per batch and cost.
local function gcra_batch(now, tol, T, cost)
  local inc = cost * T
  local new = now + inc
  return {
    inc = inc,
    s = tat_string(new),
    bucket = math.floor(new / tol) * tol,
    expiry = tat_expiry(new, tol),
    remaining = math.floor((tol - inc) / T),
  }
end
