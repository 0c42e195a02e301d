-- Set a hold's TTL if the caller still has it, or read what is left of it.
-- (Sent after rw_record.lua.)
-- KEYS[1] read-write lock
-- ARGV[1] owner token   ARGV[2] ttl ms (0: only read)   ARGV[3] retention ms
-- Returns the hold's remaining ms (the new TTL when extended), -1 when the
-- caller holds nothing.
local _, now = server_time()
local state, bad = read_rw(KEYS[1], now)
if bad then
  return bad
end
local owner = ARGV[1]
local field, mine = 'r:' .. owner, state.readers[owner]
if not mine and state.writer and state.writer.owner == owner then
  field, mine = 'w:' .. owner, state.writer
end
if not mine then
  return -1
end
local ttl = tonumber(ARGV[2])
if ttl == 0 then
  return mine.expires - now
end
local expires = now + ttl
redis.call('HSET', KEYS[1], field, grant_value(expires, mine.fence, mine.holder))
keep(KEYS[1], math.max(state.latest, expires), now, tonumber(ARGV[3]))
return ttl
