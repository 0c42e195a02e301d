-- End a grant of `owner` whose fencing token the caller does not know or
-- keep (every Redlock node's grant, a grant given back after its replicas
-- did not confirm it), keeping the fencing counter, and give the turn to
-- the process that has waited longest, waking it (see give_turn). It reads
-- before it writes. (Sent after lock_record.lua.)
-- KEYS[1] lock
-- ARGV[1] owner token   ARGV[2] the caller's process id
-- ARGV[3] '1' when that process has waiters
-- ARGV[4] how long a turn is kept, ms (with ARGV[3] '1' only)
-- Only the lock is declared as a key: its wake-up channel and turn queue
-- (same hash tag, same slot) are not, so that during a cluster slot
-- migration the call is not refused (TRYAGAIN) for naming keys that do not
-- exist; every step on them is a pcall.
-- Returns what give_turn returns (1, 2 or 3) when released, 0 when the
-- caller no longer held the lock.
local fence, _, _, _, bad, _, fence_text = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  return 0
end
redis.call('SET', KEYS[1], fence_text, 'KEEPTTL')
return give_turn(KEYS[1], fence_text, ARGV[2], ARGV[3], ARGV[4])
