-- Take the next task sequence number (task ids derive from it).
-- KEYS: see _lib.lua.
-- ARGV: none
-- Errors: NOPOOL when the pool does not exist.
-- Returns: the sequence number, as a string
local missing = missing_pool()
if missing then return missing end
return tostring(redis.call('HINCRBY', META, 'next_seq', 1) - 1)
