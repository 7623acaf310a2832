-- A pure-Lua 5.1 stand-in for Redis's built-in cmsgpack module, for fakeredis (whose Lua has
-- none). Like cmsgpack: integral numbers pack as integers, other numbers as IEEE doubles; tables
-- with keys 1..n pack as arrays, other tables as maps.
local cmsgpack = {}

local function bytes_of(value, count)
  -- big-endian bytes of a non-negative integer below 2^(8 * count), exact below 2^53
  local out = {}
  for i = count, 1, -1 do
    out[i] = value % 256
    value = math.floor(value / 256)
  end
  return string.char(unpack(out))
end

local function integer_of(s, pos, count)
  local value = 0
  for i = pos, pos + count - 1 do value = value * 256 + string.byte(s, i) end
  return value
end

local function pack_integer(v)
  if v >= 0 then
    if v < 128 then return string.char(v) end
    if v < 256 then return string.char(0xcc) .. bytes_of(v, 1) end
    if v < 65536 then return string.char(0xcd) .. bytes_of(v, 2) end
    if v < 4294967296 then return string.char(0xce) .. bytes_of(v, 4) end
    return string.char(0xcf) .. bytes_of(v, 8)
  end
  if v >= -32 then return string.char(256 + v) end
  if v >= -128 then return string.char(0xd0) .. bytes_of(256 + v, 1) end
  if v >= -32768 then return string.char(0xd1) .. bytes_of(65536 + v, 2) end
  if v >= -2147483648 then return string.char(0xd2) .. bytes_of(4294967296 + v, 4) end
  -- two's complement of a 64-bit value: high and low words
  local high = math.floor(v / 4294967296)
  local low = v - high * 4294967296
  return string.char(0xd3) .. bytes_of(high + 4294967296, 4) .. bytes_of(low, 4)
end

local function pack_double(x)
  local sign = 0
  if x < 0 or (x == 0 and 1 / x < 0) then
    sign = 128
    x = -x
  end
  local exponent, fraction
  if x ~= x then
    exponent, fraction = 2047, 2 ^ 51
  elseif x == math.huge then
    exponent, fraction = 2047, 0
  elseif x == 0 then
    exponent, fraction = 0, 0
  else
    local m, e = math.frexp(x) -- x = m * 2^e with 0.5 <= m < 1
    exponent = e + 1022
    if exponent <= 0 then -- subnormal
      fraction = math.ldexp(m, exponent + 52)
      exponent = 0
    else
      fraction = (m * 2 - 1) * 2 ^ 52
    end
  end
  local high = sign * 16777216 + exponent * 1048576 + math.floor(fraction / 4294967296)
  local low = fraction % 4294967296
  return string.char(0xcb) .. bytes_of(high, 4) .. bytes_of(low, 4)
end

local function unpack_double(s, pos)
  local high, low = integer_of(s, pos, 4), integer_of(s, pos + 4, 4)
  local sign = high >= 2147483648 and -1 or 1
  local exponent = math.floor(high / 1048576) % 2048
  local fraction = (high % 1048576) * 4294967296 + low
  if exponent == 2047 then
    if fraction == 0 then return sign * math.huge end
    return 0 / 0
  end
  if exponent == 0 then return sign * math.ldexp(fraction, -1074) end
  return sign * math.ldexp(fraction + 2 ^ 52, exponent - 1075)
end

local function pack_string(v)
  local n = #v
  if n < 32 then return string.char(0xa0 + n) .. v end
  if n < 256 then return string.char(0xd9) .. bytes_of(n, 1) .. v end
  if n < 65536 then return string.char(0xda) .. bytes_of(n, 2) .. v end
  return string.char(0xdb) .. bytes_of(n, 4) .. v
end

local encode

local function pack_table(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  local is_array = true
  for i = 1, n do
    if t[i] == nil then is_array = false break end
  end
  local parts = {}
  if is_array then
    if n < 16 then parts[1] = string.char(0x90 + n)
    elseif n < 65536 then parts[1] = string.char(0xdc) .. bytes_of(n, 2)
    else parts[1] = string.char(0xdd) .. bytes_of(n, 4) end
    for i = 1, n do parts[#parts + 1] = encode(t[i]) end
  else
    if n < 16 then parts[1] = string.char(0x80 + n)
    elseif n < 65536 then parts[1] = string.char(0xde) .. bytes_of(n, 2)
    else parts[1] = string.char(0xdf) .. bytes_of(n, 4) end
    for key, value in pairs(t) do
      parts[#parts + 1] = encode(key)
      parts[#parts + 1] = encode(value)
    end
  end
  return table.concat(parts)
end

encode = function(v)
  local kind = type(v)
  if kind == 'nil' then return string.char(0xc0) end
  if kind == 'boolean' then return string.char(v and 0xc3 or 0xc2) end
  if kind == 'string' then return pack_string(v) end
  if kind == 'table' then return pack_table(v) end
  if kind == 'number' then
    if v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 64 then return pack_integer(v) end
    return pack_double(v)
  end
  error('cmsgpack: cannot pack a ' .. kind)
end

local decode

local function decode_array(s, pos, n)
  local out = {}
  for i = 1, n do out[i], pos = decode(s, pos) end
  return out, pos
end

local function decode_map(s, pos, n)
  local out = {}
  for _ = 1, n do
    local key, value
    key, pos = decode(s, pos)
    value, pos = decode(s, pos)
    out[key] = value
  end
  return out, pos
end

local UNSIGNED = {[0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8}
local SIGNED = {[0xd0] = 1, [0xd1] = 2, [0xd2] = 4}
local STRING_LENGTH = {[0xd9] = 1, [0xda] = 2, [0xdb] = 4, [0xc4] = 1, [0xc5] = 2, [0xc6] = 4}

decode = function(s, pos)
  local byte = string.byte(s, pos)
  pos = pos + 1
  if byte < 0x80 then return byte, pos end
  if byte >= 0xe0 then return byte - 256, pos end
  if byte >= 0xa0 and byte < 0xc0 then
    local n = byte - 0xa0
    return string.sub(s, pos, pos + n - 1), pos + n
  end
  if byte >= 0x90 and byte < 0xa0 then return decode_array(s, pos, byte - 0x90) end
  if byte >= 0x80 and byte < 0x90 then return decode_map(s, pos, byte - 0x80) end
  if byte == 0xc0 then return nil, pos end
  if byte == 0xc2 then return false, pos end
  if byte == 0xc3 then return true, pos end
  if byte == 0xcb then return unpack_double(s, pos), pos + 8 end
  if UNSIGNED[byte] then
    local count = UNSIGNED[byte]
    return integer_of(s, pos, count), pos + count
  end
  if byte == 0xd3 then -- signed 64-bit: combine signed high and unsigned low words exactly
    local high = integer_of(s, pos, 4)
    if high >= 2147483648 then high = high - 4294967296 end
    return high * 4294967296 + integer_of(s, pos + 4, 4), pos + 8
  end
  if SIGNED[byte] then
    local count = SIGNED[byte]
    local value = integer_of(s, pos, count)
    if value >= 2 ^ (8 * count - 1) then value = value - 2 ^ (8 * count) end
    return value, pos + count
  end
  if STRING_LENGTH[byte] then
    local count = STRING_LENGTH[byte]
    local n = integer_of(s, pos, count)
    pos = pos + count
    return string.sub(s, pos, pos + n - 1), pos + n
  end
  if byte == 0xdc or byte == 0xdd then
    local count = byte == 0xdc and 2 or 4
    return decode_array(s, pos + count, integer_of(s, pos, count))
  end
  if byte == 0xde or byte == 0xdf then
    local count = byte == 0xde and 2 or 4
    return decode_map(s, pos + count, integer_of(s, pos, count))
  end
  error(string.format('cmsgpack: cannot unpack type byte 0x%02x', byte))
end

function cmsgpack.pack(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = encode((select(i, ...))) end
  return table.concat(parts)
end

function cmsgpack.unpack(s)
  local values, pos = {}, 1
  while pos <= #s do
    values[#values + 1], pos = decode(s, pos)
  end
  return unpack(values)
end

return cmsgpack
