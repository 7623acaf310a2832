#!lua flags=no-writes
-- labels.lua: one pool's composition by task label. READ-ONLY: the no-writes flag above
-- (Redis >= 7) makes the server refuse any write command from this script.
--
--   redis-cli --eval scripts/lua/labels.lua curriculum:{S}:meta curriculum:{S}:rows \
--     curriculum:{S}:free curriculum:{S}:labels [, tsv]
--
-- KEYS: 1 meta hash, 2 rows hash, 3 free-slot sorted set (unused), 4 labels hash of one session
--       (the first four keys of backends.redis_backend.session_keys; Cluster-safe).
-- ARGV: 1 optional 'tsv': reply with one tab-separated string per row instead of arrays.
-- Returns: rows of strings, header first, one per label id (ascending), then a 'total' row:
--   id, label, active, created, evicted, completions, samples, successes, late, mean_score,
--   mean_lp | mean_plr_score
-- active counts the label's tasks now in the pool; created/evicted/completions/samples/
-- successes/late are the label's counters since the pool was created (late: outcomes that
-- arrived after their task was evicted); mean_score = score sum / completions; mean_lp (or
-- mean_plr_score for a prioritized_level_replay pool) is the mean score of the label's active
-- tasks, scored as in top.lua.
-- Errors: 'NOPOOL ...' when the session has no pool.
local META, ROWS, LABELS = KEYS[1], KEYS[2], KEYS[4]
local TSV = ARGV[1] == 'tsv'

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

-- Active tasks, their learning progress and their counters, per label id. A label's stored
-- record holds only evicted tasks and late outcomes; its live tasks' counters are in their rows.
local active, lp_sum, live = {}, {}, {}
-- (fields named MARK hold the pool's incarnation, not a label or a row: skipped)
local MARK = '\255incarnation'
local flat = redis.call('HGETALL', ROWS)
for i = 2, #flat, 2 do
  if flat[i - 1] ~= MARK then
    local row = cmsgpack.unpack(flat[i])
    local id = row[3]
    active[id] = (active[id] or 0) + 1
    lp_sum[id] = (lp_sum[id] or 0.0) + score(row)
    local sums = live[id] or {0, 0, 0, 0.0}
    sums[1], sums[2] = sums[1] + row[4], sums[2] + row[5]
    sums[3], sums[4] = sums[3] + row[6], sums[4] + row[7]
    live[id] = sums
  end
end

local labels = {}
local raw = redis.call('HGETALL', LABELS)
for i = 1, #raw, 2 do
  if raw[i] ~= MARK then
    labels[#labels + 1] = {id = tonumber(raw[i]), values = cmsgpack.unpack(raw[i + 1])}
  end
end
table.sort(labels, function(a, b) return a.id < b.id end)

local function ratio(a, b)
  if b > 0 then return string.format('%.6f', a / b) end
  return '-'
end

local rows = {{'id', 'label', 'active', 'created', 'evicted', 'completions', 'samples',
  'successes', 'late', 'mean_score', 'mean_' .. score_name}}
-- totals: active, created, evicted, completions, samples, successes, late, score sum, lp sum
local total = {0, 0, 0, 0, 0, 0, 0, 0.0, 0.0}
local function add_row(id, name, n_active, v, lp)
  rows[#rows + 1] = {id, clean(name), string.format('%d', n_active), string.format('%d', v[2]),
    string.format('%d', v[3]), string.format('%d', v[4]), string.format('%d', v[5]),
    string.format('%d', v[6]), string.format('%d', v[7]), ratio(v[8], v[4]),
    ratio(lp, n_active)}
end
for _, label in ipairs(labels) do
  local v = label.values
  local sums = live[label.id]
  if sums then -- completions, samples, successes, score sum of the live tasks
    v[4], v[5], v[6], v[8] = v[4] + sums[1], v[5] + sums[2], v[6] + sums[3], v[8] + sums[4]
  end
  local n_active, lp = active[label.id] or 0, lp_sum[label.id] or 0.0
  add_row(string.format('%d', label.id), v[1], n_active, v, lp)
  total[1] = total[1] + n_active
  for k = 2, 8 do total[k] = total[k] + v[k] end
  total[9] = total[9] + lp
end
-- tasks without a label id (none in pools this library writes)
if active[-1] then
  add_row('-', '(none)', active[-1], {'', 0, 0, 0, 0, 0, 0, 0.0}, lp_sum[-1])
  total[1] = total[1] + active[-1]
  total[9] = total[9] + lp_sum[-1]
end
add_row('-', 'total', total[1], {'', total[2], total[3], total[4], total[5], total[6], total[7],
  total[8]}, total[9])
return emit(rows)
