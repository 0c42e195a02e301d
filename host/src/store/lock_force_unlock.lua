-- End a grant whoever holds it (operator action), keeping the fencing
-- counter, and wake its waiters (a pcall: a refused SPUBLISH does not undo
-- or hide the release). (Sent after lock_record.lua.)
-- KEYS[1] lock   ARGV[1] message (the lock key)   ARGV[2] wake-up channel
-- (not declared as a key: see lock_acquire.lua)
-- Returns 1 when a grant was ended, 0 when the lock was free.
local _, expires, _, _, bad, fence_text = read_lock(KEYS[1])
if bad then
  return wrong_type(bad)
end
if not expires then
  return 0
end
local _, now = server_time()
if expires <= now then
  return 0
end
redis.call('SET', KEYS[1], fence_text, 'KEEPTTL')
redis.pcall('SPUBLISH', ARGV[2], ARGV[1])
return 1
