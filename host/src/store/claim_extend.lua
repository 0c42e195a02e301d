-- Renew a running claim's lease if the caller still holds it.
-- KEYS[1] record hash   ARGV[1] owner token   ARGV[2] lease ms
-- Returns 1 when renewed, and also when this owner already stored the
-- outcome (a renewal that crossed the store: nothing to renew, nothing lost;
-- the record keeps its result TTL); 0 when the claim was lost.
local fields = redis.call('HMGET', KEYS[1], 'state', 'owner')
if fields[2] ~= ARGV[1] then
  return 0
end
if fields[1] ~= 'running' then
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
