-- Attach to a pool, creating it when absent (and ARGV[5] == '1').
-- KEYS: see _lib.lua.
-- ARGV: 1 params JSON, 2 capacity, 3 label capacity, 4 struct version, 5 create ('1'/'0'),
--       6 ema_timescale, 7 slow_timescale_factor, 8 task_tracker_ema_alpha, 9 success_threshold,
--       10 the initial stage record (msgpack, backends/stage_state.py StageState.to_list order),
--       11 the incarnation of a pool created now (a token no other pool of the session had)
-- Returns: {'created', incarnation} | {'exists', stored params JSON, stored struct version,
--          incarnation} | {'missing'}
local stored = redis.call('HMGET', META, 'params', 'struct_version', 'incarnation')
if stored[1] then
  return {'exists', stored[1], stored[2], stored[3] or ''}
end
if ARGV[5] ~= '1' then
  return {'missing'}
end
redis.call('HSET', META, 'params', ARGV[1], 'capacity', ARGV[2], 'label_capacity', ARGV[3],
  'struct_version', ARGV[4], 'ema_timescale', ARGV[6], 'slow_timescale_factor', ARGV[7],
  'task_tracker_ema_alpha', ARGV[8], 'success_threshold', ARGV[9], 'version', 0,
  'next_seq', 0, 'num_created', 0, 'num_evicted', 0, 'num_completed', 0, 'num_scheduled', 0,
  'num_late_outcomes', 0, 'num_active', 0, 'num_labels', 0, 'epoch', 0, 'epoch_created', 0,
  'epoch_evicted', 0, 'epoch_completed', 0, 'epoch_scheduled', 0, 'num_failures', 0,
  'epoch_failures', 0, 'num_steps', 0, 'epoch_steps', 0, 'stage', ARGV[10],
  'incarnation', ARGV[11])
local capacity = tonumber(ARGV[2])
local chunk = {}
for slot = 0, capacity - 1 do
  chunk[#chunk + 1] = slot
  chunk[#chunk + 1] = slot
  if #chunk >= 2000 or slot == capacity - 1 then
    redis.call('ZADD', FREE, unpack(chunk))
    chunk = {}
  end
end
return {'created', ARGV[11]}
