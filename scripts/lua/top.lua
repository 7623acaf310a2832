#!lua flags=no-writes
-- top.lua: the tasks of one pool with the highest learning progress. READ-ONLY: the no-writes
-- flag above (Redis >= 7) makes the server refuse any write command from this script.
--
--   redis-cli --eval scripts/lua/top.lua curriculum:{S}:meta curriculum:{S}:rows \
--     curriculum:{S}:free curriculum:{S}:labels , [N] [tsv]
--
-- KEYS: 1 meta hash, 2 rows hash, 3 free-slot sorted set (unused), 4 labels hash of one session
--       (the first four keys of backends.redis_backend.session_keys; Cluster-safe).
-- ARGV: 1 N, the number of tasks (default 10; 0 = all); 2 optional 'tsv': reply with one
--       tab-separated string per row instead of arrays.
-- Returns: rows of strings, header first, by learning progress descending (ties by slot):
--   rank, slot, task_id, label, outcomes, samples, successes, mean_score, lp
-- The score is curriculum.algorithms.learning_progress.raw_learning_progress, with
-- use_bidirectional, progress_smoothing and performance_bonus_weight from the pool's stored
-- params (meta field `params`, key `algorithm`; LearningProgressConfig defaults when absent, as
-- for discrete_random and prioritized_level_replay pools: `curriculum inspect` shows a PLR
-- pool's own scores). Decodes every row: O(pool size) while the server waits.
-- Errors: 'NOPOOL ...' when the session has no pool.
local META, ROWS, LABELS = KEYS[1], KEYS[2], KEYS[4]
local N = tonumber(ARGV[1] or '') or 10
local TSV = ARGV[2] == 'tsv'

local function clean(text)
  return (string.gsub(tostring(text), '[\t\r\n]', ' '))
end

local function emit(rows)
  if not TSV then return rows end
  local lines = {}
  for i, row in ipairs(rows) do lines[i] = table.concat(row, '\t') end
  return lines
end

-- Scoring settings from the stored params JSON.
local function lp_settings(raw)
  local ok, params = pcall(cjson.decode, raw or '')
  local algo = {}
  if ok and type(params) == 'table' and type(params.algorithm) == 'table' then
    algo = params.algorithm
  end
  return {
    bidirectional = algo.use_bidirectional ~= false,
    smoothing = tonumber(algo.progress_smoothing) or 0.0,
    bonus = tonumber(algo.performance_bonus_weight) or 0.0,
  }
end

-- r(p) = p (1 - t) / (p + t (1 - 2 p)), t = 0.5 - smoothing; identity when smoothing is 0.
local function reweight(p, smoothing)
  if smoothing == 0 then return p end
  local theta = 0.5 - smoothing
  return p * (1.0 - theta) / (p + theta * (1.0 - 2.0 * p))
end

-- Row fields: 9 fast, 10 slow, 11 perf, 12 reward, 13 reward_sq (ROW_DTYPE order).
local function raw_lp(row, s)
  local lp
  if s.bidirectional then
    lp = math.abs(reweight(row[9], s.smoothing) - reweight(row[10], s.smoothing))
  else
    lp = row[13] - row[12] * row[12]
    if lp < 0 then lp = 0.0 end
  end
  if s.bonus ~= 0 then lp = lp + s.bonus * row[11] end
  return lp
end

local params = redis.call('HGET', META, 'params')
if not params then
  return redis.error_reply('NOPOOL no pool for session ' ..
    (string.match(META, '^curriculum:{(.*)}:meta$') or META))
end
local settings = lp_settings(params)

-- (fields named MARK hold the pool's incarnation, not a label or a row: skipped)
local MARK = '\255incarnation'
local names = {}
local labels = redis.call('HGETALL', LABELS)
for i = 1, #labels, 2 do
  if labels[i] ~= MARK then
    names[tonumber(labels[i])] = clean(cmsgpack.unpack(labels[i + 1])[1])
  end
end

local tasks = {}
local flat = redis.call('HGETALL', ROWS)
for i = 1, #flat, 2 do
  if flat[i] ~= MARK then
    local row = cmsgpack.unpack(flat[i + 1])
    local lp = raw_lp(row, settings)
    local key = lp
    if key ~= key then key = -math.huge end  -- NaN sorts last
    tasks[#tasks + 1] = {slot = tonumber(flat[i]), row = row, lp = lp, key = key}
  end
end
table.sort(tasks, function(a, b)
  if a.key ~= b.key then return a.key > b.key end
  return a.slot < b.slot
end)

local rows = {{'rank', 'slot', 'task_id', 'label', 'outcomes', 'samples', 'successes',
  'mean_score', 'lp'}}
local count = #tasks
if N > 0 and N < count then count = N end
for rank = 1, count do
  local task = tasks[rank]
  local row = task.row
  local mean = '-'
  if row[4] > 0 then mean = string.format('%.6f', row[7] / row[4]) end
  rows[#rows + 1] = {
    string.format('%d', rank),
    string.format('%d', task.slot),
    string.format('%.0f', row[1]),
    names[row[3]] or (row[3] < 0 and '-' or string.format('#%d', row[3])),
    string.format('%d', row[4]),
    string.format('%d', row[5]),
    string.format('%d', row[6]),
    mean,
    string.format('%.6f', task.lp),
  }
end
return emit(rows)
