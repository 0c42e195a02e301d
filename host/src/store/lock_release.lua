-- End a grant if the caller still holds it, keeping the fencing counter,
-- and give the turn to the process that has waited longest, waking it.
-- (Sent after lock_record.lua.)
-- The wake-up is a pcall: the release stands and is reported even when the
-- server refuses SPUBLISH (an ACL without the channel); waiters poll then.
-- It goes to the sharded channel KEYS[2] (the same hash tag as the lock, so
-- the same cluster slot), and names the process whose turn it is and the
-- fencing token left ('<key>\n<process>:<fence>').
-- KEYS[1] lock   KEYS[2] wake-up channel   KEYS[3] turns
-- ARGV[1] owner token   ARGV[2] message (the lock key)   ARGV[3] the
-- caller's process id   ARGV[4] '1' when that process has waiters
-- ARGV[5] how long a turn is kept, ms
-- Returns {1, turn} when released, where turn is 0 when no process waits,
-- 1 when the caller's process has the turn, 2 when another has it;
-- {0, 0} when the caller no longer held the lock.
local fence, _, _, _, bad, now_us, fence_text = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  return {0, 0}
end
redis.call('SET', KEYS[1], fence_text, 'KEEPTTL')
local turn = next_turn(KEYS[3])
if turn == ARGV[3] and ARGV[4] ~= '1' then
  -- This process queued, but its waiters have gone since: the turn is the
  -- next one's.
  turn = next_turn(KEYS[3])
end
if not turn then
  return {1, 0}
end
redis.pcall('SPUBLISH', KEYS[2], ARGV[2] .. '\n' .. turn .. ':' .. fence_text)
if turn == ARGV[3] then
  return {1, 1}
end
if ARGV[4] == '1' then
  take_a_turn(KEYS[3], ARGV[3], now_us, tonumber(ARGV[5]))
end
return {1, 2}
