-- KEYS[1]: the stream, KEYS[2]: its dead-letter stream `<stream key>:dead` (same hash
-- tag). ARGV[1]: group, ARGV[2]: entry id, ARGV[3]: deliveries, ARGV[4]: reason,
-- ARGV[5]: dead-letter stream max length (approximate), then the entry's field, value
-- pairs.
-- Copies the entry with where it came from and why to the dead-letter stream and
-- acknowledges it, in one step: it is never both lost and unacknowledged.
-- Reply: the dead letter's id.
local args = { KEYS[2], 'MAXLEN', '~', ARGV[5], '*' }
for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
for _, v in ipairs({ '_source_id', ARGV[2], '_group', ARGV[1], '_deliveries', ARGV[3],
    '_reason', ARGV[4] }) do
  args[#args + 1] = v
end
local id = redis.call('XADD', unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return id
