-- Record a batch of outcomes, sample counts and env-config failures. Outcomes on one slot apply
-- in order. Only rows change: an entry whose task was evicted meanwhile goes to its label's
-- stored counters (an outcome also counts as late).
-- The statistics update is the spec of curriculum/ema.py, operation for operation.
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number, 3 the batch as one msgpack array: outcome count N, then
--       N x (slot, task id, label id, score), then sample count M, then M x (slot, task id,
--       label id), then failure count F, then F x (slot, task id, label id), then the
--       environment steps of the N episodes, then priority count P, then P x (outcome index
--       from 0, priority)
-- A priority is folded into its outcome's row right after that outcome (curriculum/ema.py).
-- The rows of live samples get last_sampled = num_scheduled after this write.
-- Errors: NOPOOL when the pool does not exist (nothing is written then).
-- Returns: 'applied:late'
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
-- one read of everything this script needs from the meta hash, one write at the end
local COUNTERS = {'version', 'num_completed', 'epoch_completed', 'num_late_outcomes',
  'num_scheduled', 'epoch_scheduled', 'num_failures', 'epoch_failures', 'num_steps',
  'epoch_steps'}
local meta = redis.call('HMGET', META, 'capacity', 'ema_timescale', 'slow_timescale_factor',
  'task_tracker_ema_alpha', 'success_threshold', 'priority_ema_alpha', unpack(COUNTERS))
if not meta[1] then
  return redis.error_reply('NOPOOL the pool does not exist')
end
local a, k, b, threshold = tonumber(meta[2]), tonumber(meta[3]), tonumber(meta[4]),
  tonumber(meta[5])
local c = tonumber(meta[6])
local slow_rate = a * k
local rows, dirty, labels = {}, {}, {}

local function row_of(slot)
  local row = rows[slot]
  if row == nil then
    row = get_row(slot) or false
    rows[slot] = row
  end
  return row
end

local function label_amounts(label_id)
  local amounts = labels[label_id]
  if amounts == nil then
    amounts = {[4] = 0, [5] = 0, [6] = 0, [7] = 0, [8] = 0.0, [9] = 0}
    labels[label_id] = amounts
  end
  return amounts
end

local data = cmsgpack.unpack(ARGV[3])
local n = data[1]
local m0 = data[2 + 4 * n]
local f0 = data[3 + 4 * n + 3 * m0]
local priorities = {}
local p_base = 5 + 4 * n + 3 * m0 + 3 * f0
for j = 0, (data[p_base] or 0) - 1 do
  priorities[data[p_base + 1 + 2 * j]] = data[p_base + 2 + 2 * j]
end
local scheduled_after = (tonumber(meta[11]) or 0) + m0
local applied = 0
for i = 0, n - 1 do
  local slot, task_id = data[2 + 4 * i], data[3 + 4 * i]
  local label_id, s = data[4 + 4 * i], data[5 + 4 * i]
  local row = row_of(slot)
  local live = row and row[1] == task_id
  if live then
    local first = row[4] == 0
    local baseline = row[8]
    if first then baseline = math.min(s, 0.75) end
    local x = math.max(s - baseline, 0.0) / (1.0 - baseline)
    local s_sq = s * s
    row[8] = baseline
    if first then
      row[9], row[10], row[11], row[12], row[13] = x, x, s, s, s_sq
    else
      row[9] = row[9] + a * (x - row[9])
      row[10] = row[10] + slow_rate * (x - row[10])
      row[11] = row[11] + a * (s - row[11])
      row[12] = row[12] + b * (s - row[12])
      row[13] = row[13] + b * (s_sq - row[13])
    end
    row[4] = row[4] + 1
    row[7] = row[7] + s
    if s >= threshold then row[6] = row[6] + 1 end
    local q = priorities[i]
    if q ~= nil then
      if row[17] == 0 or c == 1.0 then
        row[16] = q
      else
        row[16] = row[16] + c * (q - row[16])
      end
      row[17] = row[17] + 1
    end
    dirty[slot] = true
    applied = applied + 1
  end
  if not live and label_id >= 0 then
    local amounts = label_amounts(label_id)
    amounts[4] = amounts[4] + 1
    amounts[8] = amounts[8] + s
    if s >= threshold then amounts[6] = amounts[6] + 1 end
    amounts[7] = amounts[7] + 1
  end
end

-- Samples (row field 5, label field 5) or failures (row field 14, label field 9): the count at
-- data[base], then (slot, task id, label id) triples. Returns the count.
local function count_events(base, row_field, label_field)
  local count = data[base]
  for j = 0, count - 1 do
    local slot, task_id = data[base + 1 + 3 * j], data[base + 2 + 3 * j]
    local label_id = data[base + 3 + 3 * j]
    local row = row_of(slot)
    if row and row[1] == task_id then
      row[row_field] = row[row_field] + 1
      if row_field == 5 then row[15] = scheduled_after end
      dirty[slot] = true
    elseif label_id >= 0 then
      local amounts = label_amounts(label_id)
      amounts[label_field] = amounts[label_field] + 1
    end
  end
  return count
end
local m = count_events(2 + 4 * n, 5, 5)
local f = count_events(3 + 4 * n + 3 * m, 14, 9)
local steps = data[4 + 4 * n + 3 * m + 3 * f]

for slot in pairs(dirty) do put_row(slot, rows[slot]) end
for label_id, amounts in pairs(labels) do add_to_label(label_id, amounts) end
local added = {1, n, n, n - applied, m, m, f, f, steps, steps}
local updates = {}
for i, name in ipairs(COUNTERS) do
  updates[#updates + 1] = name
  updates[#updates + 1] = string.format('%.0f', (tonumber(meta[6 + i]) or 0) + added[i])
end
redis.call('HSET', META, unpack(updates))
return remember(ARGV[1], ARGV[2], applied .. ':' .. (n - applied))
