-- Delete a lock whoever holds it (operator action), and wake its waiters
-- (a pcall: a refused SPUBLISH does not undo or hide the delete), on the
-- sharded channel named like the waiters marker.
-- KEYS[1] lock hash   KEYS[2] waiters marker
-- ARGV[1] message (the lock key)
-- Returns 1 when a lock was deleted, 0 when it was free.
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.pcall('SPUBLISH', KEYS[2], ARGV[1])
end
return 1
