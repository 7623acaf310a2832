-- End an epoch: reset the epoch counters and count the epoch.
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number
-- Errors: NOPOOL when the pool does not exist.
-- Returns: 'created:evicted:completed:scheduled:failures:steps', the epoch counters before the
--          reset
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
local before = redis.call('HMGET', META, 'epoch_created', 'epoch_evicted', 'epoch_completed',
  'epoch_scheduled', 'epoch_failures', 'epoch_steps')
redis.call('HSET', META, 'epoch_created', 0, 'epoch_evicted', 0, 'epoch_completed', 0,
  'epoch_scheduled', 0, 'epoch_failures', 0, 'epoch_steps', 0)
count('epoch', 1)
count('version', 1)
return remember(ARGV[1], ARGV[2], table.concat(before, ':'))
