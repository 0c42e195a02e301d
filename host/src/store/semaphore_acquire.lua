-- Grant permits if enough are free, in one step, and issue the grant's
-- fencing token. (Sent after semaphore_record.lua.)
-- KEYS[1] semaphore
-- ARGV[1] owner token   ARGV[2] permits asked   ARGV[3] permits in all
-- ARGV[4] ttl ms   ARGV[5] holder description   ARGV[6] retention ms
-- Returns {1, token, permits still free} when granted (also when this
-- owner holds a grant already: a request resent after a lost reply),
-- {0, ms until the first grant ends (-1: none), permits free} when not.
local now_us, now = server_time()
local grants, used, fence, latest, bad = read_grants(KEYS[1], now)
if bad then
  return bad
end
local count, permits = tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, retention = tonumber(ARGV[4]), tonumber(ARGV[6])
local mine = grants[ARGV[1]]
if mine then
  -- A resend: write again (the same TTL), so that a WAIT after it on this
  -- connection covers the grant.
  local expires = now + ttl
  redis.call('HSET', KEYS[1], 'p:' .. ARGV[1], grant_value(expires, mine.count, mine.fence, mine.holder))
  keep(KEYS[1], math.max(latest, expires), now, retention)
  return {1, mine.fence, math.max(permits - used, 0)}
end
if used + count > permits then
  local first = -1
  for _, grant in pairs(grants) do
    if first < 0 or grant.expires - now < first then
      first = grant.expires - now
    end
  end
  return {0, first, math.max(permits - used, 0)}
end
local token = next_token(fence, now_us)
local expires = now + ttl
redis.call('HSET', KEYS[1], 'fence', string.format('%d', token),
  'p:' .. ARGV[1], grant_value(expires, count, token, ARGV[5]))
keep(KEYS[1], math.max(latest, expires), now, retention)
return {1, token, permits - used - count}
