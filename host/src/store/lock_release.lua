-- Delete a lock if the caller still owns it, and wake its waiters.
-- The wake-up is a pcall: the delete stands and is reported even when the
-- server refuses SPUBLISH (an ACL without the channel); waiters poll then.
-- KEYS[1] lock hash   KEYS[2] waiters marker
-- ARGV[1] owner token   ARGV[2] message (the lock key)
-- The wake-up goes to the sharded channel named like the waiters marker
-- (same hash tag, so the same cluster slot).
-- Returns 1 when released, 0 when the caller no longer owned the lock.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.pcall('SPUBLISH', KEYS[2], ARGV[2])
end
return 1
