#!lua flags=no-writes
-- sessions.lua: list curriculum pools with their size and progress. READ-ONLY: the no-writes
-- flag above (Redis >= 7) makes the server refuse any write command from this script.
--
--   redis-cli --eval scripts/lua/sessions.lua curriculum:sessions [curriculum:{S}:meta ...] [, tsv]
--
-- KEYS: the registry set `curriculum:sessions` and/or `curriculum:{<session>}:meta` hashes.
--       Meta keys name the pools to describe; with the registry alone, every registered session
--       is described through key names derived from the registry (standalone Redis only: on Redis
--       Cluster, pass one meta key per call).
-- ARGV: 1 optional 'tsv': reply with one tab-separated string per row instead of arrays.
-- Returns: rows of strings, header first:
--   session, state ('ok' | 'missing'), capacity, active, labels, created, completions,
--   scheduled, evictions, version
local REGISTRY = 'curriculum:sessions'
local TSV = ARGV[1] == 'tsv'
local FIELDS = {'capacity', 'num_active', 'num_labels', 'num_created', 'num_completed',
  'num_scheduled', 'num_evicted', 'version'}

local function clean(text)
  return (string.gsub(tostring(text), '[\t\r\n]', ' '))
end

local function emit(rows)
  if not TSV then return rows end
  local lines = {}
  for i, row in ipairs(rows) do lines[i] = table.concat(row, '\t') end
  return lines
end

local sessions = {}
local from_registry = false
for _, key in ipairs(KEYS) do
  if key == REGISTRY then
    from_registry = true
  else
    local session = string.match(key, '^curriculum:{(.*)}:meta$')
    if not session then
      return redis.error_reply('ERR ' .. key .. ' is neither ' .. REGISTRY ..
        ' nor a curriculum:{<session>}:meta key')
    end
    sessions[#sessions + 1] = {session, key}
  end
end
if #sessions == 0 and from_registry then
  for _, session in ipairs(redis.call('SMEMBERS', REGISTRY)) do
    sessions[#sessions + 1] = {session, 'curriculum:{' .. session .. '}:meta'}
  end
end
table.sort(sessions, function(a, b) return a[1] < b[1] end)

local rows = {{'session', 'state', 'capacity', 'active', 'labels', 'created', 'completions',
  'scheduled', 'evictions', 'version'}}
for _, entry in ipairs(sessions) do
  local values = redis.call('HMGET', entry[2], unpack(FIELDS))
  local row = {clean(entry[1]), values[1] and 'ok' or 'missing'}
  for i = 1, #FIELDS do
    row[#row + 1] = values[i] and clean(values[i]) or '-'
  end
  rows[#rows + 1] = row
end
return emit(rows)
