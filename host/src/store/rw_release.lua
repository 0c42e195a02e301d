-- End a read or write hold if the caller still has it, and withdraw the
-- caller's wish to write; wake the waiters. (Sent after rw_record.lua.)
-- KEYS[1] read-write lock
-- ARGV[1] owner token   ARGV[2] message (the lock key)   ARGV[3] retention ms
-- ARGV[4] wake-up channel (not declared as a key, as for locks: see
-- lock_acquire.lua)
-- Returns 1 when a hold was ended, 2 when only a wish to write was
-- withdrawn (readers may go in now: both announce it), 0 when the caller
-- had neither.
local _, now = server_time()
local state, bad = read_rw(KEYS[1], now)
if bad then
  return bad
end
local owner = ARGV[1]
local held = state.readers[owner] ~= nil or (state.writer ~= nil and state.writer.owner == owner)
local wished = state.wants[owner] ~= nil
if not held and not wished then
  return 0
end
redis.call('HDEL', KEYS[1], 'r:' .. owner, 'w:' .. owner, 'want:' .. owner)
local latest = 0
for other, grant in pairs(state.readers) do
  if other ~= owner then
    latest = math.max(latest, grant.expires)
  end
end
if state.writer and state.writer.owner ~= owner then
  latest = math.max(latest, state.writer.expires)
end
for other, expires in pairs(state.wants) do
  if other ~= owner then
    latest = math.max(latest, expires)
  end
end
keep(KEYS[1], latest, now, tonumber(ARGV[3]))
redis.pcall('SPUBLISH', ARGV[4], ARGV[2])
return held and 1 or 2
