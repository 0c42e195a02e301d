-- What an operator may see of a lock: never its owner token.
-- (Sent after lock_record.lua.)
-- KEYS[1] lock
-- Returns nil when free, else {fencing token, holder, ms left}.
local fence, expires, _, holder, bad = read_lock(KEYS[1])
if bad then
  return wrong_type(bad)
end
if not expires then
  return false
end
local _, now = server_time()
if expires <= now then
  return false
end
return {string.format('%d', fence), holder, expires - now}
