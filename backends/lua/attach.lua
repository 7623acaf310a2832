-- Attach to a pool, creating it when absent (and ARGV[5] == '1'). A pool that lost keys or holds
-- keys of another incarnation is removed whole and, when creating, created anew.
-- KEYS: see _lib.lua.
-- ARGV: 1 params JSON, 2 capacity, 3 label capacity, 4 struct version, 5 create ('1'/'0'),
--       6 ema_timescale, 7 slow_timescale_factor, 8 task_tracker_ema_alpha, 9 success_threshold,
--       10 the initial stage record (msgpack, backends/stage_state.py StageState.to_list order),
--       11 the incarnation of a pool created now (a token no other pool of the session had),
--       12 who creates it ('host pid'), 13 time to live in ms of a pool created now (0: none),
--       14 the task generator's config (JSON), 15 how long write tokens are kept (ms),
--       16 the initial range record (msgpack, backends/range_state.py RangeState.to_list order),
--       17 priority_ema_alpha
-- Returns: {'created', incarnation, why the old keys were replaced ('' if there were none)} |
--          {'exists', stored params JSON, stored struct version, incarnation, created ms,
--           creator, completed outcomes, generator JSON, now ms} | {'missing', why}
local now = now_ms()
local stored = redis.call('HMGET', META, 'params', 'struct_version', 'incarnation', 'created_ms',
  'creator', 'num_completed', 'generator', 'ttl_ms', 'marked')
local why = ''
if stored[1] and stored[3] and not stored[4] and not stored[9] then
  -- a pool made before keys carried incarnation markers: mark its keys once
  mark_keys(stored[3])
  redis.call('HSET', META, 'marked', '1')
end
if stored[1] and stored[3] then
  local bad = damaged_keys(stored[3])
  if #bad == 0 then
    -- forget write tokens older than the idempotency window (their writes were confirmed long ago)
    local cutoff = now - tonumber(ARGV[15])
    local tokens = redis.call('HGETALL', TOKENS)
    for i = 1, #tokens, 2 do
      if tokens[i] ~= MARK then
        local value = tokens[i + 1]
        local sep = string.find(value, ':', 1, true)
        local sep2 = sep and string.find(value, ':', sep + 1, true)
        local at = sep2 and tonumber(string.sub(value, sep + 1, sep2 - 1))
        if not at or at < cutoff then redis.call('HDEL', TOKENS, tokens[i]) end
      end
    end
    refresh_ttl(tonumber(stored[8]))
    return {'exists', stored[1], stored[2], stored[3], stored[4] or '', stored[5] or '',
      stored[6] or '0', stored[7] or '', string.format('%.0f', now)}
  end
  why = 'it had lost or held foreign keys (' .. table.concat(bad, ', ') .. ')'
elseif redis.call('EXISTS', META, ROWS, FREE, LABELS, LABEL_IDS, TOKENS, RANGES) > 0 then
  why = 'its meta hash was gone but other keys were left'
end
if ARGV[5] ~= '1' then
  return {'missing', why}
end
redis.call('DEL', META, ROWS, FREE, LABELS, LABEL_IDS, TOKENS, RANGES)
redis.call('HSET', META, 'params', ARGV[1], 'capacity', ARGV[2], 'label_capacity', ARGV[3],
  'struct_version', ARGV[4], 'ema_timescale', ARGV[6], 'slow_timescale_factor', ARGV[7],
  'task_tracker_ema_alpha', ARGV[8], 'success_threshold', ARGV[9],
  'priority_ema_alpha', ARGV[17], 'version', 0,
  'next_seq', 0, 'num_created', 0, 'num_evicted', 0, 'num_completed', 0, 'num_scheduled', 0,
  'num_late_outcomes', 0, 'num_active', 0, 'num_labels', 0, 'epoch', 0, 'epoch_created', 0,
  'epoch_evicted', 0, 'epoch_completed', 0, 'epoch_scheduled', 0, 'num_failures', 0,
  'epoch_failures', 0, 'num_steps', 0, 'epoch_steps', 0, 'stage', ARGV[10],
  'incarnation', ARGV[11], 'created_ms', string.format('%.0f', now), 'touched_ms',
  string.format('%.0f', now), 'creator', ARGV[12], 'ttl_ms', ARGV[13], 'generator', ARGV[14])
mark_keys(ARGV[11])
redis.call('HSET', RANGES, 'record', ARGV[16])
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
refresh_ttl(tonumber(ARGV[13]))
return {'created', ARGV[11], why}
