-- Renew a running claim's lease if the caller still holds it.
-- KEYS[1] record hash   ARGV[1] owner token   ARGV[2] lease ms
-- Returns 1 when renewed, 0 when the claim was lost.
if redis.call('HGET', KEYS[1], 'state') ~= 'running'
    or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
