#!lua flags=no-writes
-- summary.lua: one pool's size, counters and hyper-parameters. READ-ONLY: the no-writes flag
-- above (Redis >= 7) makes the server refuse any write command from this script.
--
--   redis-cli --eval scripts/lua/summary.lua curriculum:{S}:meta curriculum:{S}:rows \
--     curriculum:{S}:free curriculum:{S}:labels [, tsv]
--
-- KEYS: 1 meta hash, 2 rows hash, 3 free-slot sorted set, 4 labels hash of one session (the first
--       four keys of backends.redis_backend.session_keys; one hash tag, so Cluster-safe).
-- ARGV: 1 optional 'tsv': reply with one tab-separated string per row instead of arrays.
-- Returns: {field, value} rows of strings, header first: session, struct_version, capacity,
--   label_capacity, active, free, labels, created, completions, scheduled, evictions,
--   late_outcomes, epoch, epoch_*, version, mean_score, stage, stage_name, stage_transitions (only
--   in the root pool of a staged curriculum), then
--   the stored parameters: algorithm.*, ema.*, generator_fingerprint, pool_seed.
-- Errors: 'NOPOOL ...' when the session has no pool.
local META, ROWS, FREE, LABELS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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

-- A JSON value as text: integers without a fraction, other numbers with %.10g.
local function show(value)
  if type(value) == 'number' then
    if value == math.floor(value) and math.abs(value) < 2 ^ 53 then
      return string.format('%.0f', value)
    end
    return string.format('%.10g', value)
  elseif type(value) == 'boolean' then
    return value and 'true' or 'false'
  elseif type(value) == 'string' then
    return clean(value)
  elseif type(value) == 'table' then
    return clean(cjson.encode(value))
  end
  return 'null'  -- cjson.null
end

local session = string.match(META, '^curriculum:{(.*)}:meta$') or META
local meta_flat = redis.call('HGETALL', META)
if #meta_flat == 0 then
  return redis.error_reply('NOPOOL no pool for session ' .. session)
end
local meta = {}
for i = 1, #meta_flat, 2 do meta[meta_flat[i]] = meta_flat[i + 1] end
local ok, params = pcall(cjson.decode, meta.params or '')
if not ok or type(params) ~= 'table' then params = {} end

local completions, score_sum = tonumber(meta.num_completed) or 0, 0.0
-- all scores: the labels' stored sums (evicted tasks, late outcomes) plus the live rows'
-- (fields named MARK hold the pool's incarnation, not a label or a row: skipped)
local MARK = '\255incarnation'
local labels = redis.call('HGETALL', LABELS)
for i = 2, #labels, 2 do
  if labels[i - 1] ~= MARK then score_sum = score_sum + cmsgpack.unpack(labels[i])[8] end
end
local live_rows = redis.call('HGETALL', ROWS)
local active = 0
for i = 2, #live_rows, 2 do
  if live_rows[i - 1] ~= MARK then
    score_sum = score_sum + cmsgpack.unpack(live_rows[i])[7]
    active = active + 1
  end
end

local rows = {{'field', 'value'}}
local function add(name, value)
  rows[#rows + 1] = {name, value == nil and '-' or clean(value)}
end
add('session', session)
add('struct_version', meta.struct_version)
add('capacity', meta.capacity)
add('label_capacity', meta.label_capacity)
add('active', string.format('%d', active))
add('free', string.format('%d', redis.call('ZCOUNT', FREE, 0, '+inf')))
add('labels', meta.num_labels)
add('created', meta.num_created)
add('completions', meta.num_completed)
add('scheduled', meta.num_scheduled)
add('evictions', meta.num_evicted)
add('late_outcomes', meta.num_late_outcomes)
add('epoch', meta.epoch)
add('epoch_created', meta.epoch_created)
add('epoch_completed', meta.epoch_completed)
add('epoch_scheduled', meta.epoch_scheduled)
add('epoch_evicted', meta.epoch_evicted)
add('version', meta.version)
add('mean_score', completions > 0 and string.format('%.6f', score_sum / completions) or '-')
-- The stage of a staged curriculum, shown by its root pool (whose params hold the stage rule).
local staging = params.staging
if type(staging) == 'table' and meta.stage then
  local record = cmsgpack.unpack(meta.stage)
  add('stage', show(record[1]))
  add('stage_name', show(type(staging.names) == 'table' and staging.names[record[1] + 1] or '-'))
  add('stage_transitions', show(record[2]))
end

for _, group in ipairs({'algorithm', 'ema'}) do
  local section = params[group]
  if type(section) == 'table' then
    local names = {}
    for name in pairs(section) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do add(group .. '.' .. name, show(section[name])) end
  end
end
if params.generator_fingerprint ~= nil then
  add('generator_fingerprint', show(params.generator_fingerprint))
end
if params.pool_seed ~= nil then add('pool_seed', show(params.pool_seed)) end
return emit(rows)
