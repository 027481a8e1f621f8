-- KEYS and ARGV: see decide.lua. The script is the concatenation of common.lua, fast.lua,
-- the general part (fixed_window.lua, sliding_window.lua, sliding_log.lua, gcra.lua,
-- general.lua, wrapped in a function so its closures are only built when a batch needs
-- them) and decide.lua.
-- Times are integer microseconds of the server's TIME, kept below 2^53 so doubles hold
-- them exactly. Numbers passed to redis.call reach Redis as plain integers; in strings
-- built with `..` they are written with %d so Lua never prints them in exponent form.
local function int(x)
  return string.format('%d', x)
end

-- Whole milliseconds, rounded up: expiry never comes before the state's end.
local function ms_ceil(us)
  return int(math.ceil(us / 1000))
end

-- A blocked string state is "B:<until>". Returns the end of the block, or nil.
local function blocked_until(v)
  if string.byte(v, 1) == 66 then
    return tonumber(string.sub(v, 3))
  end
  return nil
end

-- Blocks a state until `till`; the key vanishes when the block ends.
local function block_string(key, till)
  redis.call('SET', key, 'B:' .. int(till), 'PXAT', ms_ceil(till))
end

-- The most points an operation adds: keeps every count and time exact in a double.
local MAX_POINTS = 2 ^ 40
-- How far ahead a TAT may run after penalties (about 1.1 years).
local MAX_AHEAD = 2 ^ 45

-- Fixed window state is one integer: tag * FW_SPAN + count, where tag is the window's
-- index modulo FW_TAGS. A value with another tag is left from an earlier window (a key
-- that outlived its window by a clock tick) and counts as empty. Counts stay below
-- FW_SPAN and values below 2^53, so doubles hold them exactly.
local FW_SPAN = 2 ^ 41
local FW_TAGS = 2048

local function fw_base(idx)
  return (idx % FW_TAGS) * FW_SPAN
end

-- GCRA state is the TAT as a hexadecimal string ("B:<until>" when blocked): Lua reads it
-- with strtoul (`tonumber(v, 16)`), where a decimal one takes strtod, which costs a check
-- about a tenth of its server time. A block string is never a hexadecimal number.
local function tat_string(tat)
  return string.format('%x', tat)
end

local function tat_parse(v)
  return tonumber(v, 16)
end

-- A TAT's key expires at the end of the bucket after the TAT's (buckets of b = capacity *
-- interval): a function of the TAT's bucket alone, so within one bucket the TTL is kept
-- (KEEPTTL) and most writes skip setting it again.
local function tat_expiry(tat, b)
  return int(math.ceil((math.floor(tat / b) + 2) * b / 1000))
end

local function tat_save(key, stored, tat, b)
  if stored and math.floor(stored / b) == math.floor(tat / b) then
    redis.call('SET', key, tat_string(tat), 'KEEPTTL')
  else
    redis.call('SET', key, tat_string(tat), 'PXAT', tat_expiry(tat, b))
  end
end
