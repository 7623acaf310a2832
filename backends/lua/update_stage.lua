-- Fold one stage's outcomes into the stage record, and end the stage when its criterion holds:
-- the spec of backends/stage_state.py, operation for operation.
-- The record is the meta field 'stage': a msgpack array of stage, transitions, stage_steps,
-- total_steps, then MAX_STAGES performance EMAs, then MAX_STAGES outcome counts.
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number, 3 stage of the outcomes, 4 their count, 5 decay, 6 add,
--       7 their environment steps, 8 criterion (0 performance, 1 time, 2 combined),
--       9 performance threshold, 10 steps per stage (msgpack array, one per stage)
-- Errors: NOPOOL when the pool does not exist.
-- Returns: '<ended stage or -1>:<the record after the update, msgpack>'
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
local r = cmsgpack.unpack(redis.call('HGET', META, 'stage'))
local max_stages = (#r - 4) / 2
local s, n, decay, add = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local steps, criterion, threshold = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local ended = -1
r[4] = r[4] + steps
if s >= 0 and s < max_stages then
  local p = 5 + s
  r[p] = r[p] * decay + add
  r[p + max_stages] = r[p + max_stages] + n
  if s == r[1] then
    r[3] = r[3] + steps
    local budgets = cmsgpack.unpack(ARGV[10])
    if s < #budgets - 1 then
      local good = r[p] >= threshold
      local long_enough = r[3] >= budgets[s + 1]
      local ends
      if criterion == 0 then ends = good
      elseif criterion == 1 then ends = long_enough
      else ends = good and long_enough end
      if ends then
        r[1], r[2], r[3] = s + 1, r[2] + 1, 0
        ended = s
      end
    end
  end
end
local packed = cmsgpack.pack(r)
redis.call('HSET', META, 'stage', packed)
count('version', 1)
return remember(ARGV[1], ARGV[2], ended .. ':' .. packed)
