-- End a grant if the caller still holds it; when the turn is the caller's
-- process's, or no process waits, or the caller may keep it past another
-- process's turn, grant it at once to the next owner (a waiter of this
-- process) instead of freeing it; else free it and wake the process whose
-- turn it is. (Sent after lock_record.lua.)
-- Keeping it trades a bounded unfairness for fewer hops between processes
-- (each costs a notification and a wake-up): the caller keeps it a few
-- times in a row at most (its client counts).
-- KEYS[1] lock
-- ARGV[1] owner token   ARGV[2] message (the lock key)
-- ARGV[3] next owner token   ARGV[4] next TTL ms   ARGV[5] next holder
-- ARGV[6] how long the next grant's key lives, ms (its TTL plus the fencing
-- counter's retention)   ARGV[7] '1' when this is a resend
-- ARGV[8] the caller's process id   ARGV[9] '1' when another waiter of it
-- remains after the next owner   ARGV[10] how long a turn is kept, ms
-- ARGV[11] '1' when the caller may keep it past another process's turn
-- ARGV[12] wake-up channel   ARGV[13] the turn queue
-- Only the lock is declared as a key: its wake-up channel and turn queue
-- (same hash tag, same slot) are named in ARGV, so that during a cluster
-- slot migration the call is not refused (TRYAGAIN) for naming keys that do
-- not exist; every step on them is a pcall.
-- Returns {2, token} when handed over, {3, token} when handed over past
-- another process's turn, {4, token} on a resend when the first send handed
-- it over (either way), {1, 0} when freed and the turn given to another process, {0, 0}
-- when the caller no longer held it.
local channel, turns = ARGV[12], ARGV[13]
local fence, _, _, now, bad, now_us, fence_text = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  local handed, expires, owner = read_lock(KEYS[1])
  if ARGV[7] == '1' and owner == ARGV[3] then
    local _, now = server_time()
    if expires > now then
      return {4, handed}
    end
  end
  return {0, 0}
end
local turn = first_turn(turns)
local past = turn and turn ~= ARGV[8]
if not past or ARGV[11] == '1' then
  -- Hand it over here.
  if turn == ARGV[8] then
    next_turn(turns)
  end
  local token = next_token(fence, now_us)
  redis.call('SET', KEYS[1], granted_value(token, now + tonumber(ARGV[4]), ARGV[3], ARGV[5]), 'PX', ARGV[6])
  if turn == ARGV[8] and ARGV[9] == '1' and redis.pcall('EXISTS', turns) == 1 then
    -- Other processes wait too: the rest of this one's waiters line up
    -- again behind them.
    take_a_turn(turns, ARGV[8], now_us, tonumber(ARGV[10]))
  elseif past and ARGV[9] ~= '1' then
    -- Its last waiter is served: this process leaves the queue, or its
    -- turn would come with nobody to take it.
    leave_turns(turns, ARGV[8])
  end
  if past then
    return {3, token}
  end
  return {2, token}
end
-- Another process's turn: wake it; this process's waiters line up again.
next_turn(turns)
redis.call('SET', KEYS[1], fence_text, 'KEEPTTL')
redis.pcall('SPUBLISH', channel, ARGV[2] .. '\n' .. turn .. ':' .. fence_text)
take_a_turn(turns, ARGV[8], now_us, tonumber(ARGV[10]))
return {1, 0}
