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
--   mean_lp
-- active counts the label's tasks now in the pool; created/evicted/completions/samples/
-- successes/late are the label's counters since the pool was created (late: outcomes that
-- arrived after their task was evicted); mean_score = score sum / completions; mean_lp is the
-- mean learning progress of the label's active tasks (scored as in top.lua).
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

local function reweight(p, smoothing)
  if smoothing == 0 then return p end
  local theta = 0.5 - smoothing
  return p * (1.0 - theta) / (p + theta * (1.0 - 2.0 * p))
end

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
    lp_sum[id] = (lp_sum[id] or 0.0) + raw_lp(row, settings)
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
  'successes', 'late', 'mean_score', 'mean_lp'}}
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
