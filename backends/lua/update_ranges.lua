-- Fold boundary outcomes into the range record, and move a bound when its buffer is full:
-- the spec of backends/range_state.py, operation for operation.
-- The record is the field 'record' of the ranges hash (KEYS[7]): a msgpack array of version,
-- widened, narrowed, stale, then MAX_AXES low bounds, MAX_AXES high bounds (grid indices), then
-- 2 * MAX_AXES buffer counts and 2 * MAX_AXES buffer score sums (boundary b = 2 axis + side).
-- KEYS: see _lib.lua.
-- ARGV: 1 client id, 2 write number, 3 entries (msgpack array of {boundary, index, count, total}),
--       4 msgpack {step, buffer size, axes}, 5 msgpack {grid, initial low, initial high} (one
--       array each, one entry per axis), 6 widen_at, 7 narrow_at
-- Errors: NOPOOL when the pool does not exist.
-- Returns: the record after the update (msgpack)
local missing = missing_pool()
if missing then return missing end
local done = replay(ARGV[1], ARGV[2])
if done then return done end
local r = cmsgpack.unpack(redis.call('HGET', RANGES, 'record'))
local max_axes = (#r - 4) / 6
local LOW, HIGH, COUNTS, SUMS = 5, 5 + max_axes, 5 + 2 * max_axes, 5 + 4 * max_axes
local entries = cmsgpack.unpack(ARGV[3])
local settings = cmsgpack.unpack(ARGV[4])
local step, buffer_size, axes = settings[1], settings[2], settings[3]
local limits = cmsgpack.unpack(ARGV[5])
local grid, initial_low, initial_high = limits[1], limits[2], limits[3]
local widen_at, narrow_at = tonumber(ARGV[6]), tonumber(ARGV[7])
for _, entry in ipairs(entries) do
  local b, index, n, total = entry[1], entry[2], entry[3], entry[4]
  local axis, side = math.floor(b / 2), b % 2
  local at = (side == 1) and (HIGH + axis) or (LOW + axis)
  if b < 0 or b >= 2 * axes or index ~= r[at] then
    r[4] = r[4] + n
  else
    local c, s = COUNTS + b, SUMS + b
    r[c] = r[c] + n
    r[s] = r[s] + total
    if r[c] >= buffer_size then
      local mean = r[s] / r[c]
      local before = r[at]
      if mean >= widen_at then
        if side == 1 then
          r[at] = math.min(before + step, grid[axis + 1] - 1)
        else
          r[at] = math.max(before - step, 0)
        end
        if r[at] ~= before then r[2] = r[2] + 1 end
      elseif mean <= narrow_at then
        if side == 1 then
          r[at] = math.max(before - step, initial_high[axis + 1])
        else
          r[at] = math.min(before + step, initial_low[axis + 1])
        end
        if r[at] ~= before then r[3] = r[3] + 1 end
      end
      r[c] = 0
      r[s] = 0.0
      r[1] = r[1] + 1
    end
  end
end
local packed = cmsgpack.pack(r)
redis.call('HSET', RANGES, 'record', packed)
count('version', 1)
return remember(ARGV[1], ARGV[2], packed)
