-- Remove every key of a pool.
-- KEYS: see _lib.lua.
-- ARGV: none
-- Returns: the number of keys removed, as a string
return tostring(redis.call('DEL', META, ROWS, FREE, LABELS, LABEL_IDS, TOKENS, RANGES))
