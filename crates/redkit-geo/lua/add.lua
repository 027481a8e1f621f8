-- KEYS[1]: the index's sorted set `<prefix>:geo:{<name>}`, KEYS[2]: its metadata hash
-- `<prefix>:geo:{<name>}:meta` (one hash tag, so one cluster slot).
-- ARGV: four per place: longitude, latitude, id, metadata ('-' none, '+<metadata>').
-- Adds or moves every place and stores the metadata given, atomically.
-- Reply: how many places were new.
local added = 0
local geo = {}
local meta = {}
for i = 1, #ARGV, 4 do
  geo[#geo + 1] = ARGV[i]
  geo[#geo + 1] = ARGV[i + 1]
  geo[#geo + 1] = ARGV[i + 2]
  local m = ARGV[i + 3]
  if string.sub(m, 1, 1) == '+' then
    meta[#meta + 1] = ARGV[i + 2]
    meta[#meta + 1] = string.sub(m, 2)
  end
end
if #geo > 0 then added = redis.call('GEOADD', KEYS[1], unpack(geo)) end
if #meta > 0 then redis.call('HSET', KEYS[2], unpack(meta)) end
return added
