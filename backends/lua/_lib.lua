-- Helpers shared by the pool scripts; the loader puts this file in front of each script.
-- ARGV (every script but attach): ..., then last the pool incarnation the client attached to.
-- KEYS (every script): 1 meta hash, 2 rows hash (field = slot), 3 free-slot sorted set,
-- 4 labels hash (field = label id), 5 label ids hash (field = name), 6 write tokens hash,
-- 7 range record hash (field 'record': backends/range_state.py RangeState.to_list, msgpack).
-- A row is a msgpack array in backends/layout.py ROW_DTYPE order:
--   1 task_id, 2 seq, 3 label_id, 4 n_outcomes, 5 n_samples, 6 n_success, 7 score_sum,
--   8 baseline, 9 fast, 10 slow, 11 perf, 12 reward, 13 reward_sq, 14 n_failures,
--   15 last_sampled, 16 priority, 17 n_priorities
-- A label is a msgpack array in LABEL_DTYPE order; it stores only what is no longer in a row
-- (evicted tasks' counters, late outcomes): readers add the live rows (layout.label_totals).
--   1 name, 2 created, 3 evicted, 4 completions, 5 samples, 6 successes, 7 late, 8 score_sum,
--   9 failures
-- Replies are strings: Lua numbers returned to a client are truncated to integers.
local META, ROWS, FREE, LABELS, LABEL_IDS, TOKENS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local RANGES = KEYS[7]

-- Every key of a pool carries its incarnation (backends/redis_keys.py): the meta hash in its field
-- 'incarnation', the other hashes in the field MARK, the free set as the member MARK..incarnation
-- (score -1, below every slot).
local MARK = '\255incarnation'

-- The names of the pool's keys (other than meta) that are missing or belong to another
-- incarnation than ``incarnation``.
local function damaged_keys(incarnation)
  local bad = {}
  if redis.call('HGET', ROWS, MARK) ~= incarnation then bad[#bad + 1] = ROWS end
  if redis.call('HGET', LABELS, MARK) ~= incarnation then bad[#bad + 1] = LABELS end
  if redis.call('HGET', LABEL_IDS, MARK) ~= incarnation then bad[#bad + 1] = LABEL_IDS end
  if redis.call('HGET', TOKENS, MARK) ~= incarnation then bad[#bad + 1] = TOKENS end
  if redis.call('HGET', RANGES, MARK) ~= incarnation then bad[#bad + 1] = RANGES end
  if not redis.call('ZSCORE', FREE, MARK .. incarnation) then bad[#bad + 1] = FREE end
  return bad
end

-- Put the incarnation markers into every key but meta.
local function mark_keys(incarnation)
  redis.call('HSET', ROWS, MARK, incarnation)
  redis.call('HSET', LABELS, MARK, incarnation)
  redis.call('HSET', LABEL_IDS, MARK, incarnation)
  redis.call('HSET', TOKENS, MARK, incarnation)
  redis.call('HSET', RANGES, MARK, incarnation)
  redis.call('ZADD', FREE, -1, MARK .. incarnation)
end

-- Give every key of the pool the time to live ``ttl_ms`` (0: none).
local function refresh_ttl(ttl_ms)
  if ttl_ms and ttl_ms > 0 then
    for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl_ms) end
  end
end

-- Milliseconds since the epoch, by the server's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Scripts that change a pool call this first: a pool whose keys are gone (destroyed, or lost by
-- a Redis restart without persistence) is reported, never half re-created by the write; so is a
-- pool re-created since the client attached (its slots, ids and labels are not the client's),
-- and a pool that lost some of its keys (evicted under maxmemory, deleted by hand) or holds keys
-- of another incarnation. A pool with a time to live gets it again.
-- Every script but attach gets the incarnation the client attached to as its last argument.
local function missing_pool()
  local meta = redis.call('HMGET', META, 'incarnation', 'ttl_ms')
  local incarnation = meta[1]
  if not incarnation then
    return redis.error_reply('NOPOOL the pool does not exist')
  end
  if incarnation ~= ARGV[#ARGV] then
    return redis.error_reply('NEWPOOL the pool was re-created since this client attached')
  end
  local bad = damaged_keys(incarnation)
  if #bad > 0 then
    return redis.error_reply('BROKENPOOL the pool lost or has foreign keys: '
      .. table.concat(bad, ', '))
  end
  refresh_ttl(tonumber(meta[2]))
  return nil
end

-- A new task's row; ``last_sampled`` is the pool's num_scheduled now.
local function new_row(task_id, label_id, seq, last_sampled)
  return {task_id, seq, label_id, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, last_sampled,
    0.0, 0}
end

-- The row in ``slot`` (nil when free). Bytes that are not a row of 17 numbers stop the script
-- (before it wrote anything: scripts read every row they need first) with CORRUPT.
local function get_row(slot)
  local raw = redis.call('HGET', ROWS, slot)
  if not raw then return nil end
  local ok, row = pcall(cmsgpack.unpack, raw)
  if not ok or type(row) ~= 'table' or #row ~= 17 or type(row[1]) ~= 'number' then
    error({err = 'CORRUPT ' .. ROWS .. ' slot ' .. slot .. ' does not hold a row'})
  end
  return row
end

local function put_row(slot, row)
  redis.call('HSET', ROWS, slot, cmsgpack.pack(row))
end

local function count(field, amount)
  redis.call('HINCRBY', META, field, amount)
end

-- Add amounts[field index] to a label's counters.
local function add_to_label(label_id, amounts)
  local raw = redis.call('HGET', LABELS, label_id)
  if not raw then return end
  local label = cmsgpack.unpack(raw)
  for index, amount in pairs(amounts) do
    label[index] = label[index] + amount
  end
  redis.call('HSET', LABELS, label_id, cmsgpack.pack(label))
end

-- Idempotent writes: a client numbers its writes, records ('<client id>:r'), stage updates
-- ('<client id>:s'), range updates ('<client id>:g') and other writes ('<client id>:w') separately, and sends a failed write
-- again, with its number, before any newer one of its kind. A write whose number is the last one recorded for that key gets the
-- reply recorded the first time instead of being applied twice.
-- A token is '<write number>:<server time, ms>:<reply>'; attach prunes tokens older than the
-- idempotency window.
local function replay(client, write_seq)
  local last = redis.call('HGET', TOKENS, client)
  if last then
    local sep = string.find(last, ':', 1, true)
    local sep2 = sep and string.find(last, ':', sep + 1, true)
    if sep2 and string.sub(last, 1, sep - 1) == write_seq then
      return string.sub(last, sep2 + 1)
    end
  end
  return nil
end

local function remember(client, write_seq, reply)
  local now = string.format('%.0f', now_ms())
  redis.call('HSET', TOKENS, client, write_seq .. ':' .. now .. ':' .. reply)
  redis.call('HSET', META, 'touched_ms', now)
  return reply
end

-- ':<n>' with the next task sequence number n, taken, when ``flag`` is '1'; else ''.
local function reserve_next(flag)
  if flag ~= '1' then return '' end
  return ':' .. string.format('%.0f', redis.call('HINCRBY', META, 'next_seq', 1) - 1)
end

local function new_task(slot, task_id, label_id, seq)
  local scheduled = tonumber(redis.call('HGET', META, 'num_scheduled')) or 0
  put_row(slot, new_row(task_id, label_id, seq, scheduled))
  if label_id >= 0 then add_to_label(label_id, {[2] = 1}) end
  count('num_created', 1)
  count('epoch_created', 1)
end
