-- ARGV[3]: '1' to extend the idle timeout (when due), '0' to only read.
-- Reply: the session's fields (HGETALL), or false when it is gone.
local touched, deadline = alive()
if not touched then return false end
if ARGV[3] == '1' then extend(touched, deadline, false) end
return redis.call('HGETALL', key)
