-- The time left on a lock if the caller holds it. (Sent after lock_record.lua.)
-- KEYS[1] lock   ARGV[1] owner token
-- Returns the ms left, or -2 when the caller does not hold it.
local fence, expires, _, now, bad = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  return -2
end
return expires - now
