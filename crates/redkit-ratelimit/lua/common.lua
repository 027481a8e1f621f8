-- KEYS, ARGV: none of their own; the first part of decide.lua's script (the parts are
-- concatenated into one script: common, fixed_window, sliding_window, sliding_log, gcra,
-- decide).
-- Times are integer microseconds of the server's TIME. Integers are written with %d so
-- Lua never prints them in exponent form, and stay below 2^53 so doubles hold them exactly.
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

-- Blocks a string state until `till`; the key vanishes when the block ends.
local function block_string(key, till)
  redis.call('SET', key, 'B:' .. int(till), 'PXAT', ms_ceil(till))
end

-- The most points an operation adds: keeps every count and time exact in a double.
local MAX_POINTS = 2 ^ 40
local MAX_AHEAD = 2 ^ 47
