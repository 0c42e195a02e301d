-- Set a counter, refusing keys that do not hold a counter.
-- KEYS[1] counter   ARGV[1] new value (an integer, as text)
-- Returns 1. Errors (WRONGTYPE, not an integer) leave the key unchanged.
-- INCRBY by 0 checks that the key is absent or holds an integer.
local check = redis.pcall('INCRBY', KEYS[1], 0)
if type(check) == 'table' and check.err then
  return check
end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return 1
