-- Grant a lock if it is free, in one step, and issue its fencing token.
-- (Sent after waiters.lua, which defines mark_waiting.)
-- KEYS[1] lock hash {owner, fence, holder}   KEYS[2] fencing counter
-- KEYS[3] waiters marker
-- ARGV[1] owner token   ARGV[2] ttl ms   ARGV[3] caller's remaining wait ms (0: none)
-- ARGV[4] holder description   ARGV[5] fencing counter retention ms
-- ARGV[6] how long other callers of the same client still wait (0: none):
--         a grant keeps the waiters marker for them, so that its release
--         wakes them
-- Returns {1, token} when granted (also when this owner holds it already: a
-- request resent after a lost reply), {0, pttl of the current holder} when not.
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then
  -- A resend: write again (the same TTL), so that a WAIT after it on this
  -- connection covers the grant.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('HGET', KEYS[1], 'fence'))}
end
if owner then
  local wait = tonumber(ARGV[3])
  if wait > 0 then
    local refused = mark_waiting(KEYS[3], wait)
    if refused then return refused end
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('WRONGTYPE lock key holds a hash without an owner')
end
local others = tonumber(ARGV[6])
if others > 0 then
  local refused = mark_waiting(KEYS[3], others)
  if refused then return refused end
end

-- The token is max(previous + 1, server time in microseconds): strictly
-- increasing while the counter lives, and still larger than every earlier
-- token after it expired, unless the server clock went back by more than the
-- retention. Microseconds since 1970 stay below 2^53, exact in Lua numbers.
local now = redis.call('TIME')
local fence = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = redis.call('GET', KEYS[2])
if last then
  last = tonumber(last)
  if not last then
    return redis.error_reply('WRONGTYPE fencing counter is not a number')
  end
  if last >= fence then fence = last + 1 end
end
local ttl = tonumber(ARGV[2])
local fence_text = string.format('%.0f', fence)
redis.call('SET', KEYS[2], fence_text, 'PX', ttl + tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'fence', fence_text, 'holder', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, fence}
