-- Set a grant's TTL if the caller still holds it, or read what is left of
-- it. (Sent after semaphore_record.lua.)
-- KEYS[1] semaphore
-- ARGV[1] owner token   ARGV[2] ttl ms (0: only read)   ARGV[3] retention ms
-- Returns the grant's remaining ms (the new TTL when extended), -1 when
-- the caller holds no live grant.
local _, now = server_time()
local grants, _, _, latest, bad = read_grants(KEYS[1], now)
if bad then
  return bad
end
local mine = grants[ARGV[1]]
if not mine then
  return -1
end
local ttl = tonumber(ARGV[2])
if ttl == 0 then
  return mine.expires - now
end
local expires = now + ttl
redis.call('HSET', KEYS[1], 'p:' .. ARGV[1], grant_value(expires, mine.count, mine.fence, mine.holder))
keep(KEYS[1], math.max(latest, expires), now, tonumber(ARGV[3]))
return ttl
