#!lua flags=no-writes
-- top.lua: the tasks of one pool with the highest score. READ-ONLY: the no-writes
-- flag above (Redis >= 7) makes the server refuse any write command from this script.
--
--   redis-cli --eval scripts/lua/top.lua curriculum:{S}:meta curriculum:{S}:rows \
--     curriculum:{S}:free curriculum:{S}:labels , [N] [tsv]
--
-- KEYS: 1 meta hash, 2 rows hash, 3 free-slot sorted set (unused), 4 labels hash of one session
--       (the first four keys of backends.redis_backend.session_keys; Cluster-safe).
-- ARGV: 1 N, the number of tasks (default 10; 0 = all); 2 optional 'tsv': reply with one
--       tab-separated string per row instead of arrays.
-- Returns: rows of strings, header first, by score descending (ties by slot):
--   rank, slot, task_id, label, outcomes, samples, successes, mean_score, lp | plr_score
-- The score (see scorer below) is the one `curriculum inspect --view top` shows: learning
-- progress ('lp'), or a prioritized_level_replay pool's own task score ('plr_score').
-- Decodes every row: O(pool size) while the server waits.
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

-- The score of a task, as `curriculum inspect` computes it (curriculum.inspect): for a
-- prioritized_level_replay pool its PLR task score (curriculum.algorithms.prioritized_replay.
-- task_scores under the pool's score_function; 0 for a task without a score yet), named
-- 'plr_score'; for any other pool its raw learning progress (curriculum.algorithms.
-- learning_progress.raw_learning_progress with use_bidirectional, progress_smoothing and
-- performance_bonus_weight from the stored params; LearningProgressConfig defaults when absent),
-- named 'lp'.
-- Row fields (ROW_DTYPE order): 4 n_outcomes, 9 fast, 10 slow, 11 perf, 12 reward,
-- 13 reward_sq, 16 priority, 17 n_priorities.
local function reweight(p, smoothing)
  if smoothing == 0 then return p end
  local theta = 0.5 - smoothing  -- r(p) = p (1 - t) / (p + t (1 - 2 p)); identity at 0
  return p * (1.0 - theta) / (p + theta * (1.0 - 2.0 * p))
end

local function plr_score(row, fn)
  local seen
  if fn == 'priority' then seen = row[17] > 0 else seen = row[4] > 0 end
  if not seen then return 0.0 end
  if fn == 'learnability' then return row[11] * (1.0 - row[11]) end
  if fn == 'progress' then return math.abs(row[9] - row[10]) end
  if fn == 'score_variance' then
    local v = row[13] - row[12] * row[12]
    if v < 0 then v = 0.0 end
    return v
  end
  return row[16]
end

local function scorer(raw)
  local ok, params = pcall(cjson.decode, raw or '')
  local algo = {}
  if ok and type(params) == 'table' and type(params.algorithm) == 'table' then
    algo = params.algorithm
  end
  if algo.type == 'prioritized_level_replay' then
    local fn = algo.score_function or 'learnability'
    return 'plr_score', function(row) return plr_score(row, fn) end
  end
  local bidirectional = algo.use_bidirectional ~= false
  local smoothing = tonumber(algo.progress_smoothing) or 0.0
  local bonus = tonumber(algo.performance_bonus_weight) or 0.0
  return 'lp', function(row)
    local lp
    if bidirectional then
      lp = math.abs(reweight(row[9], smoothing) - reweight(row[10], smoothing))
    else
      lp = row[13] - row[12] * row[12]
      if lp < 0 then lp = 0.0 end
    end
    if bonus ~= 0 then lp = lp + bonus * row[11] end
    return lp
  end
end

local params = redis.call('HGET', META, 'params')
if not params then
  return redis.error_reply('NOPOOL no pool for session ' ..
    (string.match(META, '^curriculum:{(.*)}:meta$') or META))
end
local score_name, score = scorer(params)

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
    local lp = score(row)
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
  'mean_score', score_name}}
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
