-- Set a lock's TTL if the caller still holds it. (Sent after lock_record.lua.)
-- KEYS[1] lock
-- ARGV[1] owner token   ARGV[2] ttl ms   ARGV[3] fencing counter retention ms
-- Returns 1 when extended, 0 when the caller no longer holds the lock.
local fence, _, holder, now, bad = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], granted_value(fence, now + ttl, ARGV[1], holder), 'PX', ttl + tonumber(ARGV[3]))
return 1
