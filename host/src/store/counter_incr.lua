-- Add to a counter in one step: optionally within bounds, optionally at most
-- once per operation id.
-- KEYS[1] counter (integer as text)
-- KEYS[2] (optional) operation record: hash {delta, value}, expires with the window
-- ARGV[1] delta   ARGV[2] min or ''   ARGV[3] max or ''   ARGV[4] window ms (with KEYS[2])
-- Returns {1, new value} when applied; {2, first value, first delta} when the
-- operation id was seen before (nothing applied); {0, current value} when the
-- new value would leave the bounds (nothing changed). Errors as INCRBY gives
-- them (WRONGTYPE, not an integer, overflow), with nothing changed.
--
-- The sum is computed by INCRBY (exact 64-bit arithmetic) and values travel
-- as text. Only the bound checks compare Lua numbers (doubles); the client
-- keeps bounds within +-(2^53 - 1), where those comparisons are exact.
if KEYS[2] then
  local seen = redis.call('HMGET', KEYS[2], 'delta', 'value')
  if seen[1] then
    return {2, seen[2], seen[1]}
  end
end
local old = redis.pcall('GET', KEYS[1])
if type(old) == 'table' and old.err then
  return old
end
local new = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(new) == 'table' and new.err then
  return new
end
if (ARGV[2] ~= '' and new < tonumber(ARGV[2])) or (ARGV[3] ~= '' and new > tonumber(ARGV[3])) then
  if old then
    redis.call('SET', KEYS[1], old, 'KEEPTTL')
  else
    redis.call('DEL', KEYS[1])
  end
  return {0, old or '0'}
end
local value = redis.call('GET', KEYS[1])
if KEYS[2] then
  redis.call('HSET', KEYS[2], 'delta', ARGV[1], 'value', value)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return {1, value}
