-- Give a claim up so that the next caller may run the action, and wake
-- waiting duplicates (a pcall: a refused SPUBLISH does not undo or hide the
-- delete).
-- KEYS[1] record hash   KEYS[2] waiters marker
-- ARGV[1] owner token   ARGV[2] message (the record key), sent on the
-- sharded channel named like the waiters marker
-- Returns 1 when abandoned, 0 when the caller no longer held the claim.
if redis.call('HGET', KEYS[1], 'state') ~= 'running'
    or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.pcall('SPUBLISH', KEYS[2], ARGV[2])
end
return 1
