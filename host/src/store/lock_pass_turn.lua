-- A lock's turn reached a process with nobody left to take it (its last
-- waiter gave up as the turn was given): give it to the next process and
-- wake that one, unless the lock was granted since the release that gave
-- the turn (that grant's release gives the next turn).
-- (Sent after lock_record.lua.)
-- KEYS[1] lock
-- ARGV[1] message (the lock key)   ARGV[2] the fencing token the release
-- left, as announced   ARGV[3] wake-up channel   ARGV[4] the turn queue
-- Only the lock is declared as a key: its wake-up channel and turn queue
-- (same hash tag, same slot) are named in ARGV, so that during a cluster
-- slot migration the call is not refused (TRYAGAIN) for naming keys that do
-- not exist; every step on them is a pcall.
-- Returns 1 when the turn was given on, 0 when not.
-- Released and not granted since: the lock holds just that token, or
-- nothing (its fencing counter expired with it: free too).
local value = redis.pcall('GET', KEYS[1])
if value and value ~= ARGV[2] then
  return 0
end
local turn = next_turn(ARGV[4])
if not turn then
  return 0
end
-- (The turn may come back to the caller's process: a waiter there lined
-- up again since, and takes it.)
redis.pcall('SPUBLISH', ARGV[3], ARGV[1] .. '\n' .. turn .. ':' .. ARGV[2])
return 1
