-- Replace a pool's rows, label counters, counters and stage record with a checkpoint's. Labels
-- are merged by name (existing ids never change); the rows' label ids are remapped accordingly.
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number, 3 msgpack array of rows (one per slot; an empty slot is
--       {-1}), 4 msgpack array of labels (LABEL_DTYPE order), 5 msgpack map of counters,
--       6 overflow label name, 7 label capacity, 8 the stage record (msgpack, see
--       update_stage.lua), 9 the range record (msgpack, see update_ranges.lua)
-- Errors: NOPOOL when the pool does not exist; 'LABELFULL <n>' (nothing changed) when n of the
--         checkpoint's labels would be counted under the overflow label (shm_records.labels_folded).
-- Returns: 'ok'
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
local rows = cmsgpack.unpack(ARGV[3])
local labels = cmsgpack.unpack(ARGV[4])
local counters = cmsgpack.unpack(ARGV[5])

local function intern(name)
  local known = redis.call('HGET', LABEL_IDS, name)
  if known then return tonumber(known) end
  local used = tonumber(redis.call('HGET', META, 'num_labels'))
  if used >= tonumber(ARGV[7]) - 1 and name ~= ARGV[6] then return intern(ARGV[6]) end
  redis.call('HSET', LABEL_IDS, name, used)
  count('num_labels', 1)
  return used
end

-- refuse, before any change, labels that would not all fit beside the pool's own
do
  local used = tonumber(redis.call('HGET', META, 'num_labels'))
  local known, folded = {}, 0
  for _, label in ipairs(labels) do
    local name = label[1]
    if not known[name] and not redis.call('HGET', LABEL_IDS, name) then
      if used >= tonumber(ARGV[7]) - 1 and name ~= ARGV[6] then
        folded = folded + 1
        name = ARGV[6]
      end
      if not known[name] and not redis.call('HGET', LABEL_IDS, name) then
        known[name] = true
        used = used + 1
      end
    end
  end
  if folded > 0 then return redis.error_reply('LABELFULL ' .. folded) end
end

-- existing labels keep their names and lose their counters
local existing = redis.call('HGETALL', LABELS)
for i = 1, #existing, 2 do
  if existing[i] ~= MARK then
    local label = cmsgpack.unpack(existing[i + 1])
    redis.call('HSET', LABELS, existing[i], cmsgpack.pack({label[1], 0, 0, 0, 0, 0, 0, 0.0, 0}))
  end
end
local mapping = {}
for i, label in ipairs(labels) do
  local id = intern(label[1])
  mapping[i - 1] = id
  redis.call('HSET', LABELS, id, cmsgpack.pack(label))
end

redis.call('DEL', ROWS, FREE)
redis.call('HSET', ROWS, MARK, ARGV[#ARGV])
redis.call('ZADD', FREE, -1, MARK .. ARGV[#ARGV])
local active = 0
for index, row in ipairs(rows) do
  local slot = index - 1
  if row[1] >= 0 then
    if row[3] >= 0 then row[3] = mapping[row[3]] end
    put_row(slot, row)
    active = active + 1
  else
    redis.call('ZADD', FREE, slot, slot)
  end
end
for name, value in pairs(counters) do
  if name ~= 'num_labels' and name ~= 'num_active' then
    redis.call('HSET', META, name, value)
  end
end
redis.call('HSET', META, 'num_active', active, 'stage', ARGV[8])
redis.call('HSET', RANGES, 'record', ARGV[9])
count('version', 1)
return remember(ARGV[1], ARGV[2], 'ok')
