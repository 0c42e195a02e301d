-- Delete a lock whoever holds it (operator action), and wake its waiters
-- (a pcall: a refused PUBLISH does not undo or hide the delete).
-- KEYS[1] lock hash   KEYS[2] waiters marker
-- ARGV[1] notification channel   ARGV[2] message
-- Returns 1 when a lock was deleted, 0 when it was free.
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.pcall('PUBLISH', ARGV[1], ARGV[2])
end
return 1
