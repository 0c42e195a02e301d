-- Shared by the lock, semaphore and read-write lock scripts (sent before
-- their own helpers): the server's clock, fencing tokens and key lifetimes.

-- The server's time: microseconds and milliseconds since 1970 (below 2^53,
-- exact in Lua numbers). (Arithmetic on TIME's strings converts them, and
-- `us - us % 1000` floors, without calling functions: the server's Lua
-- spends more on calls than on arithmetic.)
local function server_time()
  local now = redis.call('TIME')
  local us = now[1] * 1000000 + now[2]
  return us, (us - us % 1000) / 1000
end

-- A new grant's fencing token: max(previous + 1, server time in µs).
-- Strictly increasing while the key lives, and still larger than every
-- earlier token after it expired, unless the server clock went back by more
-- than the retention.
local function next_token(previous, now_us)
  if previous and previous >= now_us then
    return previous + 1
  end
  return now_us
end

-- Keeps `key` until `latest` (server ms) plus `retention` ms.
local function keep(key, latest, now, retention)
  redis.call('PEXPIRE', key, math.max(latest - now, 0) + retention)
end
