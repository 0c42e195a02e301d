-- End a grant if the caller still holds it, keeping the fencing counter,
-- and give the turn to the process that has waited longest, waking it.
-- (Sent after lock_record.lua.)
-- The wake-up is a pcall: the release stands and is reported even when the
-- server refuses SPUBLISH (an ACL without the channel); waiters poll then.
-- It goes to the sharded channel ARGV[6] (the same hash tag as the lock, so
-- the same cluster slot), and names the process whose turn it is and the
-- fencing token left ('<key>\n<process>:<fence>').
-- KEYS[1] lock
-- ARGV[1] owner token   ARGV[2] message (the lock key)   ARGV[3] the
-- caller's process id   ARGV[4] '1' when that process has waiters
-- ARGV[5] how long a turn is kept, ms   ARGV[6] wake-up channel
-- ARGV[7] the turn queue
-- Only the lock is declared as a key: its wake-up channel and turn queue
-- (same hash tag, same slot) are named in ARGV, so that during a cluster
-- slot migration the call is not refused (TRYAGAIN) for naming keys that do
-- not exist; every step on them is a pcall.
-- Returns {1, turn} when released, where turn is 0 when no process waits,
-- 1 when the caller's process has the turn, 2 when another has it;
-- {0, 0} when the caller no longer held the lock.
local channel, turns = ARGV[6], ARGV[7]
local fence, _, _, _, bad, now_us, fence_text = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  return {0, 0}
end
redis.call('SET', KEYS[1], fence_text, 'KEEPTTL')
local turn = next_turn(turns)
if turn == ARGV[3] and ARGV[4] ~= '1' then
  -- This process queued, but its waiters have gone since: the turn is the
  -- next one's.
  turn = next_turn(turns)
end
if not turn then
  return {1, 0}
end
redis.pcall('SPUBLISH', channel, ARGV[2] .. '\n' .. turn .. ':' .. fence_text)
if turn == ARGV[3] then
  return {1, 1}
end
if ARGV[4] == '1' then
  take_a_turn(turns, ARGV[3], now_us, tonumber(ARGV[5]))
end
return {1, 2}
