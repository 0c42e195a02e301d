-- Set a lock's TTL if the caller still owns it.
-- KEYS[1] lock hash   KEYS[2] fencing counter
-- ARGV[1] owner token   ARGV[2] ttl ms   ARGV[3] fencing counter retention ms
-- Returns 1 when extended, 0 when the caller no longer owns the lock.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl + tonumber(ARGV[3]))
return 1
