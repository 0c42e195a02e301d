-- What an operator may see of a lock: never its owner token.
-- KEYS[1] lock hash
-- Returns nil when free, else {fencing token, holder, pttl ms}.
local fields = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'holder')
if not fields[1] then
  return false
end
return {fields[2] or '0', fields[3] or '', redis.call('PTTL', KEYS[1])}
