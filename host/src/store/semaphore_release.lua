-- End a grant if the caller still holds it and wake the waiters.
-- (Sent after semaphore_record.lua.) The wake-up is a pcall, as for locks.
-- KEYS[1] semaphore
-- ARGV[1] owner token   ARGV[2] message (the semaphore key)
-- ARGV[3] retention ms   ARGV[4] wake-up channel (not declared as a key,
-- as for locks: see lock_acquire.lua)
-- Returns 1 when released, 0 when the caller held no live grant.
local _, now = server_time()
local grants, _, _, _, bad = read_grants(KEYS[1], now)
if bad then
  return bad
end
if not grants[ARGV[1]] then
  return 0
end
redis.call('HDEL', KEYS[1], 'p:' .. ARGV[1])
local latest = 0
for owner, grant in pairs(grants) do
  if owner ~= ARGV[1] and grant.expires > latest then
    latest = grant.expires
  end
end
keep(KEYS[1], latest, now, tonumber(ARGV[3]))
redis.pcall('SPUBLISH', ARGV[4], ARGV[2])
return 1
