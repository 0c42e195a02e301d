-- Reserve COUNT serial numbers in one step, on the server's day (UTC).
-- KEYS[1] sequence key; a daily sequence counts in KEYS[1] .. ':YYYYMMDD'
--         instead, a key built here from the server's clock (it keeps KEYS[1]'s
--         hash tag, so it lives in the same cluster slot).
-- ARGV[1] count (>= 1)   ARGV[2] '1' for a daily reset, else '0'
-- ARGV[3] ttl seconds of a day's key (set when the key has none: on its first number)
-- ARGV[4] '' to use the server's TIME, else unix seconds (a test seam)
-- Returns {last reserved number (text), 'YYYYMMDD', ms until the server's next midnight}.
-- The reserved numbers are last - count + 1 .. last.
local secs, micros
if ARGV[4] == '' then
  local now = redis.call('TIME')
  secs, micros = tonumber(now[1]), tonumber(now[2])
else
  secs, micros = tonumber(ARGV[4]), 0
end

-- Civil date from days since 1970-01-01 (H. Hinnant's algorithm); every
-- intermediate stays far below 2^53, so Lua's doubles are exact here.
local z = math.floor(secs / 86400) + 719468
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
  - math.floor(doe / 146096)) / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local d = doy - math.floor((153 * mp + 2) / 5) + 1
local m = mp < 10 and mp + 3 or mp - 9
local y = yoe + era * 400
if m <= 2 then y = y + 1 end
local day = string.format('%04d%02d%02d', y, m, d)
local to_midnight = (86400 - secs % 86400) * 1000 - math.floor(micros / 1000)

local key = KEYS[1]
if ARGV[2] == '1' then
  key = KEYS[1] .. ':' .. day
end
local last = redis.pcall('INCRBY', key, ARGV[1])
if type(last) == 'table' and last.err then
  return last
end
if ARGV[2] == '1' and redis.call('TTL', key) == -1 then
  redis.call('EXPIRE', key, ARGV[3])
end
return {redis.call('GET', key), day, to_midnight}
