-- Reply: 1 after extending the idle timeout, 0 when the session is gone.
local touched, deadline = alive()
if not touched then return 0 end
extend(touched, deadline, true)
return 1
