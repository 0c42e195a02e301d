-- The remaining TTL of a lock if the caller owns it.
-- KEYS[1] lock hash   ARGV[1] owner token
-- Returns the PTTL in ms (-1: no TTL), or -2 when the caller does not own it.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return -2
end
return redis.call('PTTL', KEYS[1])
