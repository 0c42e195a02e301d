-- End a grant if the caller still holds it, keeping the fencing counter,
-- and wake its waiters. (Sent after lock_record.lua.)
-- The wake-up is a pcall: the release stands and is reported even when the
-- server refuses SPUBLISH (an ACL without the channel); waiters poll then.
-- It goes to the sharded channel KEYS[2] (the same hash tag as the lock, so
-- the same cluster slot); publishing to nobody costs a lookup.
-- KEYS[1] lock   KEYS[2] wake-up channel
-- ARGV[1] owner token   ARGV[2] message (the lock key)
-- Returns 1 when released, 0 when the caller no longer held the lock.
local fence, _, _, _, bad = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', fence), 'KEEPTTL')
redis.pcall('SPUBLISH', KEYS[2], ARGV[2])
return 1
