-- Helpers shared by the pool scripts; the loader puts this file in front of each script.
-- ARGV (every script but attach): ..., then last the pool incarnation the client attached to.
-- KEYS (every script): 1 meta hash, 2 rows hash (field = slot), 3 free-slot sorted set,
-- 4 labels hash (field = label id), 5 label ids hash (field = name), 6 write tokens hash.
-- A row is a msgpack array in backends/layout.py ROW_DTYPE order:
--   1 task_id, 2 seq, 3 label_id, 4 n_outcomes, 5 n_samples, 6 n_success, 7 score_sum,
--   8 baseline, 9 fast, 10 slow, 11 perf, 12 reward, 13 reward_sq, 14 n_failures
-- A label is a msgpack array in LABEL_DTYPE order; it stores only what is no longer in a row
-- (evicted tasks' counters, late outcomes): readers add the live rows (layout.label_totals).
--   1 name, 2 created, 3 evicted, 4 completions, 5 samples, 6 successes, 7 late, 8 score_sum,
--   9 failures
-- Replies are strings: Lua numbers returned to a client are truncated to integers.
local META, ROWS, FREE, LABELS, LABEL_IDS, TOKENS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

-- Scripts that change a pool call this first: a pool whose keys are gone (destroyed, or lost by
-- a Redis restart without persistence) is reported, never half re-created by the write; so is a
-- pool re-created since the client attached (its slots, ids and labels are not the client's).
-- Every script but attach gets the incarnation the client attached to as its last argument.
local function missing_pool()
  local incarnation = redis.call('HGET', META, 'incarnation')
  if not incarnation then
    return redis.error_reply('NOPOOL the pool does not exist')
  end
  if incarnation ~= ARGV[#ARGV] then
    return redis.error_reply('NEWPOOL the pool was re-created since this client attached')
  end
  return nil
end

local function new_row(task_id, label_id, seq)
  return {task_id, seq, label_id, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0}
end

local function get_row(slot)
  local raw = redis.call('HGET', ROWS, slot)
  if not raw then return nil end
  return cmsgpack.unpack(raw)
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
-- ('<client id>:s') and other writes ('<client id>:w') separately, and sends a failed write
-- again, with its number, before any newer one of its kind. A write whose number is the last one recorded for that key gets the
-- reply recorded the first time instead of being applied twice.
local function replay(client, write_seq)
  local last = redis.call('HGET', TOKENS, client)
  if last then
    local sep = string.find(last, ':', 1, true)
    if string.sub(last, 1, sep - 1) == write_seq then
      return string.sub(last, sep + 1)
    end
  end
  return nil
end

local function remember(client, write_seq, reply)
  redis.call('HSET', TOKENS, client, write_seq .. ':' .. reply)
  return reply
end

local function new_task(slot, task_id, label_id, seq)
  put_row(slot, new_row(task_id, label_id, seq))
  if label_id >= 0 then add_to_label(label_id, {[2] = 1}) end
  count('num_created', 1)
  count('epoch_created', 1)
end
