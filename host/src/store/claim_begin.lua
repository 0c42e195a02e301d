-- Claim an idempotency key in one step, or report what an earlier call left.
-- (Sent after waiters.lua, which defines mark_waiting.)
-- KEYS[1] record hash {state, owner, fp, result}   KEYS[2] waiters marker
-- ARGV[1] owner token   ARGV[2] payload fingerprint ('' when none)
-- ARGV[3] lease ms   ARGV[4] caller's remaining wait ms (0: none)
-- Returns '<tag>\n<payload>' (one string: a table reply costs the server
-- more to send), where tag is one of
--   'fresh'    the caller now runs the action (also when it holds the claim
--              already: a request resent after a lost reply),
--   'done'     payload is the stored result,
--   'failed'   payload is the cached failure,
--   'running'  another caller runs it; payload is its lease's remaining
--              TTL in ms (PTTL's answer),
--   'mismatch' the key was used with another payload.
local fields = redis.call('HMGET', KEYS[1], 'state', 'fp', 'owner', 'result')
local state = fields[1]
if not state then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.error_reply('WRONGTYPE idempotency record without a state')
  end
  redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1], 'fp', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 'fresh\n'
end
if (fields[2] or '') ~= ARGV[2] then
  return 'mismatch\n'
end
if state == 'done' or state == 'failed' then
  return state .. '\n' .. (fields[4] or '')
end
if fields[3] == ARGV[1] then
  -- A resend: write again (the lease), so that a WAIT after it on this
  -- connection covers the claim.
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 'fresh\n'
end
local wait = tonumber(ARGV[4])
if wait > 0 then
  local refused = mark_waiting(KEYS[2], wait)
  if refused then return refused end
end
return 'running\n' .. redis.call('PTTL', KEYS[1])
