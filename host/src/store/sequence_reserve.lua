-- Reserve COUNT serial numbers in one step, on the server's day (UTC).
-- KEYS[1] the sequence: an integer as text; for a daily sequence a hash
--         {YYYYMMDD = last number of that day} that keeps the server's
--         current and previous day only.
-- ARGV[1] count (>= 1; 0 reads the last number without writing)
-- ARGV[2] '1' for a daily reset, else '0'
-- ARGV[3] ttl seconds of a daily hash, set again by each day's first number
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

-- Civil date of a unix time (H. Hinnant's algorithm); every intermediate
-- stays far below 2^53, so Lua's doubles are exact here.
local function civil_day(t)
  local z = math.floor(t / 86400) + 719468
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
  return string.format('%04d%02d%02d', y, m, d)
end

local day = civil_day(secs)
local to_midnight = (86400 - secs % 86400) * 1000 - math.floor(micros / 1000)

if ARGV[1] == '0' then
  local last
  if ARGV[2] == '1' then
    last = redis.call('HGET', KEYS[1], day)
  else
    last = redis.call('GET', KEYS[1])
  end
  return {last or '0', day, to_midnight}
end

if ARGV[2] ~= '1' then
  local last = redis.pcall('INCRBY', KEYS[1], ARGV[1])
  if type(last) == 'table' and last.err then
    return last
  end
  return {redis.call('GET', KEYS[1]), day, to_midnight}
end

local last = redis.pcall('HINCRBY', KEYS[1], day, ARGV[1])
if type(last) == 'table' and last.err then
  return last
end
if last == tonumber(ARGV[1]) then
  -- The day's first numbers: forget the days before yesterday, and keep the
  -- hash for the TTL from now.
  local yesterday = civil_day(secs - 86400)
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if field ~= day and field ~= yesterday then
      redis.call('HDEL', KEYS[1], field)
    end
  end
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {redis.call('HGET', KEYS[1], day), day, to_midnight}
