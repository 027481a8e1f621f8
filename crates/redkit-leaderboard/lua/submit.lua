-- KEYS / ARGV[1..9+S]: see common.lua. Scopes: 'f' the all-time board, then one token
-- per period in ARGV[8]'s order, back 0 (the current boards).
-- ARGV[A]: number of submissions, then four arguments each from ARGV[A + 1]: member,
-- mode ('r' replace, 'b' best, 'i' increment), score (or delta), data ('-' none,
-- '+<data>').
-- Writes the all-time board and the current board of every period, all or nothing.
-- Reply: {1, stored, changed, ...} with the all-time outcome per submission;
-- {-1, i} when submission i (0-based) would leave the score budget; {-2} when the
-- tie-break horizon does not cover the server's time.
local n = tonumber(ARGV[A])
local targets = boards
for t = 2, #targets do
  targets[t].at = period_start(targets[t].code, targets[t].index + 1 + keep) * 1000
end
local step = 0
if bits > 0 then
  step = floor((now_ms() - epoch_ms) / res_ms)
  if step < 0 or step >= pow then return { -2 } end
end

-- plan every write first, so a bad submission leaves everything untouched
local plan = {}
local current = {}
for t = 1, #targets do current[t] = {} end
local out = { 1 }
for i = 0, n - 1 do
  local member = ARGV[A + 1 + 4 * i]
  local mode = ARGV[A + 2 + 4 * i]
  local score = tonumber(ARGV[A + 3 + 4 * i])
  local changed = 0
  for t = 1, #targets do
    local cur = current[t][member]
    if cur == nil then
      local s = redis.call('ZSCORE', targets[t].z, member)
      cur = s and tonumber(s) or false
    end
    local g = sign * score
    local new = false
    if mode == 'r' then
      if not cur or group_of(cur) ~= g then new = g * pow + step end
    elseif mode == 'b' then
      if not cur or g < group_of(cur) then new = g * pow + step end
    elseif not cur or score ~= 0 then
      if cur then g = group_of(cur) + g end
      if out_of_budget(g) then return { -1, i } end
      new = g * pow + step
    end
    if new then
      plan[#plan + 1] = { t, member, cur, new }
      current[t][member] = new
      if t == 1 then changed = 1 end
    else
      current[t][member] = cur
    end
  end
  out[#out + 1] = fmt(current[1][member])
  out[#out + 1] = changed
end

for _, w in ipairs(plan) do
  local b = targets[w[1]]
  redis.call('ZADD', b.z, w[4], w[2])
  retie(b, w[3], w[4])
end
for i = 0, n - 1 do
  local data = ARGV[A + 4 + 4 * i]
  if string.sub(data, 1, 1) == '+' then
    for t = 1, #targets do
      redis.call('HSET', targets[t].d, ARGV[A + 1 + 4 * i], string.sub(data, 2))
    end
  end
end
for t = 2, #targets do
  local b = targets[t]
  redis.call('PEXPIREAT', b.z, b.at)
  redis.call('PEXPIREAT', b.d, b.at)
  if ranking == 'd' then redis.call('PEXPIREAT', b.t, b.at) end
end
return out
