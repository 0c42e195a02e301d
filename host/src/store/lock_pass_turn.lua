-- A lock's turn reached a process with nobody left to take it (its last
-- waiter gave up as the turn was given): give it to the next process and
-- wake that one, unless the lock is granted (its release will give it).
-- (Sent after lock_record.lua.)
-- KEYS[1] lock   KEYS[2] wake-up channel   KEYS[3] turns
-- ARGV[1] message (the lock key)   ARGV[2] the caller's process id
-- Returns 1 when the turn was given to another process, 0 when not.
local _, expires, _, _, bad = read_lock(KEYS[1])
if bad then
  return 0
end
if expires then
  local _, now = server_time()
  if expires > now then
    return 0
  end
end
local turn = next_turn(KEYS[3])
if turn == ARGV[2] then
  turn = next_turn(KEYS[3])
end
if not turn then
  return 0
end
redis.pcall('SPUBLISH', KEYS[2], ARGV[1] .. '\n' .. turn)
return 1
