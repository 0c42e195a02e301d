-- The operator's view of an idempotency record, read in one step.
-- KEYS[1] record hash {state, owner, fp, result}
-- Returns nil when absent, else {state, fingerprint ('' when none),
-- result or failure ('' while running), pttl}.
local fields = redis.call('HMGET', KEYS[1], 'state', 'fp', 'result')
if not fields[1] then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.error_reply('WRONGTYPE idempotency record without a state')
  end
  return false
end
return {fields[1], fields[2] or '', fields[3] or '', redis.call('PTTL', KEYS[1])}
