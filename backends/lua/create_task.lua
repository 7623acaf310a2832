-- Put a new task into the lowest free slot.
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number, 3 task id, 4 label id, 5 sequence number, 6 '1' to
--       reserve the client's next sequence number too
-- Errors: NOPOOL when the pool does not exist.
-- Returns: the slot, or '-1' when the pool is full (as a string), followed by
--          ':<sequence number>' when one was reserved
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
local reserved = reserve_next(ARGV[6])
local free = redis.call('ZRANGEBYSCORE', FREE, 0, '+inf', 'LIMIT', 0, 1)
if #free == 0 then
  return remember(ARGV[1], ARGV[2], '-1' .. reserved)
end
redis.call('ZREM', FREE, free[1])
local slot = tonumber(free[1])
new_task(slot, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
count('num_active', 1)
count('version', 1)
return remember(ARGV[1], ARGV[2], tostring(slot) .. reserved)
