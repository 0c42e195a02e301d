-- The live grants of a semaphore, for operators. (Sent after
-- semaphore_record.lua.)
-- KEYS[1] semaphore
-- Returns a flat list: count, fence (text), holder, ms left, for each grant.
local _, now = server_time()
local grants, _, _, _, bad = read_grants(KEYS[1], now)
if bad then
  return bad
end
local out = {}
for _, grant in pairs(grants) do
  table.insert(out, grant.count)
  table.insert(out, string.format('%d', grant.fence))
  table.insert(out, grant.holder)
  table.insert(out, grant.expires - now)
end
return out
