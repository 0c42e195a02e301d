-- End the caller's grant, named by its owner token and fencing token,
-- keeping the fencing counter, and give the turn to the process that has
-- waited longest, waking it (see give_turn). (Sent after lock_record.lua.)
-- The released value (the fencing token alone, the key's expiry kept) is
-- written first, in the command that reads the old one, and the old one
-- is put back when the caller turns out not to hold the lock: a release is
-- one command where reading first would take three. (The script is atomic:
-- nobody sees the value in between; keyspace notifications, when enabled,
-- show the put-back as a write.) Where the server refuses the write (a
-- replica, no memory left, too few replicas), the lock is read instead:
-- the holder gets the refusal, and any other caller 0.
-- KEYS[1] lock
-- ARGV[1] a Lua pattern matching the start of the grant's value:
-- '^<fence> %d+ <owner> ' (the owner token escaped), so that the check
-- needs no new strings, which cost the server's Lua more than the match
-- ARGV[2] the grant's fencing token
-- ARGV[3] '1' when the caller's own clock says the grant has not ended: the
-- server's clock is then not read. (Where the two clocks disagree, a grant
-- nobody took since is released all the same; one taken since has another
-- owner and is not.)
-- ARGV[4] the caller's process id   ARGV[5] '1' when that process has waiters
-- ARGV[6] how long a turn is kept, ms (with ARGV[5] '1' only)
-- Only the lock is declared as a key: its wake-up channel and turn queue
-- (same hash tag, same slot) are not, so that during a cluster slot
-- migration the call is not refused (TRYAGAIN) for naming keys that do not
-- exist; every step on them is a pcall.
-- Returns what give_turn returns (1, 2 or 3) when released, 0 when the
-- caller no longer held the lock.
local old = redis.pcall('SET', KEYS[1], ARGV[2], 'KEEPTTL', 'GET')
-- Refused (a replica, no memory left, too few replicas): nothing was
-- written, and the lock is read, so that a caller that no longer holds it
-- is told so rather than given the refusal.
local refused = type(old) == 'table' and not string.find(old.err, 'WRONGTYPE', 1, true)
local value = old
if refused then
  value = redis.pcall('GET', KEYS[1])
end
local held = type(value) == 'string' and string.find(value, ARGV[1]) ~= nil
local bad
if not held or ARGV[3] ~= '1' then
  local _, expires, _, _, reason = lock_fields(value)
  bad = reason
  if held then
    local _, now = server_time()
    held = expires > now
  end
end
if bad then
  if not refused and type(old) == 'string' then
    redis.call('SET', KEYS[1], old, 'KEEPTTL')
  end
  return wrong_type(bad)
end
if refused then
  if held then
    return old
  end
  return 0
end
if not held then
  -- Not the caller's grant: what was there goes back.
  if old then
    redis.call('SET', KEYS[1], old, 'KEEPTTL')
  else
    redis.call('DEL', KEYS[1])
  end
  return 0
end
return give_turn(KEYS[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6])
