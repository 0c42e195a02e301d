-- Grant a lock if it is free, in one step, and issue its fencing token.
-- (Sent after lock_record.lua.)
-- KEYS[1] lock
-- ARGV[1] owner token   ARGV[2] ttl ms   ARGV[3] holder description
-- ARGV[4] how long the key lives, ms (the TTL plus the fencing counter's
-- retention)
-- When the caller waits (and only then), its process takes its turn:
-- ARGV[5] the caller's process id   ARGV[6] '1' when another waiter of that
-- process remains after a grant   ARGV[7] how long a turn is kept, ms
-- Only the lock is declared as a key: its turn queue ('<lock>:turns', same
-- hash tag, same slot) is not, so that during a cluster slot migration the
-- call is not refused (TRYAGAIN) for naming a key that does not exist;
-- every step on it is a pcall.
-- Returns the fencing token (positive) when granted (also when this owner
-- holds it already: a request resent after a lost reply), minus the ms left
-- to the current holder (negative) when not. (One integer: a table reply
-- costs the server more to send.)
local fence, expires, owner, holder, bad = read_lock(KEYS[1])
if bad then
  return wrong_type(bad)
end
local now_us, now = server_time()
local ttl = tonumber(ARGV[2])
if expires and expires > now then
  if owner ~= ARGV[1] then
    if ARGV[5] then
      take_a_turn(KEYS[1] .. ':turns', ARGV[5], now_us, tonumber(ARGV[7]))
    end
    return now - expires
  end
  -- A resend: write again (the same TTL), so that a WAIT after it on this
  -- connection covers the grant.
  redis.call('SET', KEYS[1], granted_value(fence, now + ttl, owner, holder), 'PX', ARGV[4])
  return fence
end

local token = next_token(fence, now_us)
redis.call('SET', KEYS[1], granted_value(token, now + ttl, ARGV[1], ARGV[3]), 'PX', ARGV[4])
-- Served: a process with no other waiter leaves the queue. (One with more
-- keeps its place; its release queues it again if it left.)
if ARGV[5] and ARGV[6] ~= '1' then
  leave_turns(KEYS[1] .. ':turns', ARGV[5])
end
return token
