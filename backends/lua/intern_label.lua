-- The id of a label, assigning the next id to a new one; labels are never renumbered.
-- When only one id is left, every new label maps to the overflow label.
-- KEYS: see _lib.lua.
-- ARGV: 1 name, 2 overflow label name, 3 label capacity
-- Errors: NOPOOL when the pool does not exist.
-- Returns: the label id, as a string
local missing = missing_pool()
if missing then return missing end
local function intern(name)
  local known = redis.call('HGET', LABEL_IDS, name)
  if known then return known end
  local used = tonumber(redis.call('HGET', META, 'num_labels'))
  if used >= tonumber(ARGV[3]) - 1 and name ~= ARGV[2] then
    return intern(ARGV[2])
  end
  redis.call('HSET', LABEL_IDS, name, used)
  redis.call('HSET', LABELS, used, cmsgpack.pack({name, 0, 0, 0, 0, 0, 0, 0.0, 0}))
  count('num_labels', 1)
  count('version', 1)
  return tostring(used)
end
return intern(ARGV[1])
