-- KEYS[1]: the session hash, ARGV[1..2]: idle and touch interval (see common.lua,
-- which precedes this file in the script).
-- Reply: the server time (ms) after extending the idle timeout, 0 when the session is
-- gone.
local touched, deadline = alive()
if not touched then return 0 end
extend(touched, deadline, true)
return now()
