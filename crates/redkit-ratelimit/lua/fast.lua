-- KEYS and ARGV: see decide.lua (this file is a part of its script).
-- The hot path: a check of one fixed window or GCRA limit with no block configured, one
-- or two commands. Each appends its three numbers to `out` and returns true, or returns
-- false without writing when the state needs the general path (blocked, another type).

local function fast_fixed(out, key, now, c, w, cost, ph)
  local shifted = now + ph % w
  local idx = math.floor(shifted / w)
  local left = (idx + 1) * w - shifted
  local base = fw_base(idx)
  local v = redis.pcall('INCRBY', key, cost)
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
  local k = #out
  if count > c then
    -- denials are free: take the units back
    redis.call('INCRBY', key, -cost)
    out[k + 1], out[k + 2], out[k + 3] = math.max(c - count + cost, 0), left, left
  else
    out[k + 1], out[k + 2], out[k + 3] = c - count, left, -1
  end
  return true
end

local function fast_gcra(out, key, now, c, T, cost)
  local v = redis.pcall('GET', key)
  local stored
  if v then
    if type(v) ~= 'string' or string.byte(v, 1) == 66 then
      return false
    end
    stored = tonumber(v)
    if not stored then
      return false
    end
  end
  local tat = now
  if stored and stored > now then
    tat = stored
  end
  local new, tol = tat + cost * T, c * T
  local k = #out
  if new - now <= tol then
    tat_save(key, stored, new, tol)
    out[k + 1], out[k + 2], out[k + 3] = math.floor((tol - (new - now)) / T), new - now, -1
  else
    out[k + 1], out[k + 2], out[k + 3] =
      math.max(math.floor((tol - (tat - now)) / T), 0), tat - now, new - tol - now
  end
  return true
end
