-- Add to a counter in one step: optionally within bounds, optionally at most
-- once per operation id.
-- KEYS[1] counter (integer as text)
-- KEYS[2] (optional) operation record: 'DELTA VALUE', expires with the window
-- ARGV[1] delta   ARGV[2] min or ''   ARGV[3] max or ''   ARGV[4] window ms (with KEYS[2])
-- Returns the new value when applied (an integer, or text where a double
-- would not hold it exactly or the operation record has it as text: no
-- table, which costs the server more to send); {2, first value, first
-- delta} when the operation id was seen before (nothing applied); {0,
-- current value} when the new value would leave the bounds (nothing
-- changed). Errors as INCRBY gives them (WRONGTYPE, not an integer,
-- overflow), with nothing changed.
--
-- The sum is computed by INCRBY (exact 64-bit arithmetic); values travel as
-- text, or as integer replies where a double holds them exactly. Only the
-- bound checks compare Lua numbers (doubles); the client keeps bounds
-- within +-(2^53 - 1), where those comparisons are exact.
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then
    local space = string.find(seen, ' ', 1, true)
    if not space then
      return redis.error_reply('WRONGTYPE operation record holds a value tollgate did not write')
    end
    return {2, string.sub(seen, space + 1), string.sub(seen, 1, space - 1)}
  end
end
local bounded = ARGV[2] ~= '' or ARGV[3] ~= ''
local old
if bounded then
  old = redis.pcall('GET', KEYS[1])
  if type(old) == 'table' and old.err then
    return old
  end
end
local new = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(new) == 'table' and new.err then
  return new
end
if bounded and ((ARGV[2] ~= '' and new < tonumber(ARGV[2])) or (ARGV[3] ~= '' and new > tonumber(ARGV[3]))) then
  if old then
    redis.call('SET', KEYS[1], old, 'KEEPTTL')
  else
    redis.call('DEL', KEYS[1])
  end
  return {0, old or '0'}
end
-- The new value: as a number when a double holds it exactly (an integer
-- reply), else as text read back. The operation record stores it as text.
local exact = new > -9007199254740992 and new < 9007199254740992
if KEYS[2] then
  local value = exact and string.format('%d', new) or redis.call('GET', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. value, 'PX', ARGV[4])
  return value
end
if exact then
  return new
end
return redis.call('GET', KEYS[1])
