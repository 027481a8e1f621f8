-- Reply: the server time (ms) after extending the idle timeout, 0 when the session is
-- gone.
local touched, deadline = alive()
if not touched then return 0 end
extend(touched, deadline, true)
return now()
