-- Store the outcome of a claimed action if the caller still holds the claim,
-- and wake waiting duplicates.
-- The wake-up is a pcall: the write before it stands and is reported even
-- when the server refuses SPUBLISH (an ACL without the channel); waiters
-- then find out by polling.
-- KEYS[1] record hash   KEYS[2] waiters marker
-- ARGV[1] owner token   ARGV[2] 'done' or 'failed'   ARGV[3] result or failure
-- ARGV[4] result ttl ms   ARGV[5] message (the record key), sent on the
-- sharded channel named like the waiters marker
-- Returns 1 when stored (also when this owner stored it already: a request
-- resent after a lost reply), 0 when the claim was lost (its lease ran out; a
-- newer owner's outcome, if any, stands).
local fields = redis.call('HMGET', KEYS[1], 'owner', 'state')
if fields[1] ~= ARGV[1] then
  return 0
end
if fields[2] ~= 'running' then
  -- Stored already by this owner (a resend): write again (the same state),
  -- so that a WAIT after it on this connection covers the result.
  redis.call('HSET', KEYS[1], 'state', fields[2])
  return 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'result', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.pcall('SPUBLISH', KEYS[2], ARGV[5])
end
return 1
