-- Compare-and-set eviction: replace the task in a slot only if it is still the expected one.
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number, 3 slot, 4 expected task id, 5 new task id, 6 label id,
--       7 sequence number, 8 '1' to reserve the client's next sequence number too
-- Errors: NOPOOL when the pool does not exist.
-- Returns: '1' when replaced, '0' when the slot holds another task (nothing changed), followed
--          by ':<sequence number>' when one was reserved
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
local slot = tonumber(ARGV[3])
local reserved = reserve_next(ARGV[8])
local row = get_row(slot)
if not row or row[1] ~= tonumber(ARGV[4]) then
  return remember(ARGV[1], ARGV[2], '0' .. reserved)
end
if row[3] >= 0 then -- the evicted task's counters move from its row to its label
  add_to_label(row[3], {[3] = 1, [4] = row[4], [5] = row[5], [6] = row[6], [8] = row[7],
    [9] = row[14]})
end
count('num_evicted', 1)
count('epoch_evicted', 1)
new_task(slot, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
count('version', 1)
return remember(ARGV[1], ARGV[2], '1' .. reserved)
