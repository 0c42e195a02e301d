-- Grant a read or write hold if the lock allows it, in one step, and issue
-- its fencing token. (Sent after rw_record.lua.)
-- KEYS[1] read-write lock
-- ARGV[1] 'r' or 'w'   ARGV[2] owner token   ARGV[3] ttl ms
-- ARGV[4] holder description   ARGV[5] retention ms
-- ARGV[6] for a writer that will wait: ms its wish to write lives (0: none)
-- A reader is let in when there is no writer and no writer waiting; a
-- writer when there is nobody at all. A refused writer that will wait
-- leaves its wish, which keeps new readers out.
-- Returns {1, token} when granted (also when this owner holds it already:
-- a resend), {0, ms until the first holder in the way ends (-1: none)}.
local now_us, now = server_time()
local state, bad = read_rw(KEYS[1], now)
if bad then
  return bad
end
local mode, owner = ARGV[1], ARGV[2]
local ttl, retention = tonumber(ARGV[3]), tonumber(ARGV[5])
local field = mode .. ':' .. owner
local mine
if mode == 'r' then
  mine = state.readers[owner]
elseif state.writer and state.writer.owner == owner then
  mine = state.writer
end
if mine then
  -- A resend: write again (the same TTL), so that a WAIT after it on this
  -- connection covers the grant.
  local expires = now + ttl
  redis.call('HSET', KEYS[1], field, grant_value(expires, mine.fence, mine.holder))
  keep(KEYS[1], math.max(state.latest, expires), now, retention)
  return {1, mine.fence}
end
local free
if mode == 'r' then
  free = not state.writer and next(state.wants) == nil
else
  free = not state.writer and next(state.readers) == nil
end
if not free then
  local wish = tonumber(ARGV[6])
  if mode == 'w' and wish > 0 then
    local expires = now + wish
    redis.call('HSET', KEYS[1], 'want:' .. owner, string.format('%d', expires))
    if not state.fence then
      redis.call('HSET', KEYS[1], 'fence', '0')
    end
    keep(KEYS[1], math.max(state.latest, expires), now, retention)
  end
  return {0, first_end(state, now, mode == 'r')}
end
local token = next_token(state.fence, now_us)
local expires = now + ttl
redis.call('HSET', KEYS[1], 'fence', string.format('%d', token),
  field, grant_value(expires, token, ARGV[4]))
redis.call('HDEL', KEYS[1], 'want:' .. owner)
keep(KEYS[1], math.max(state.latest, expires), now, retention)
return {1, token}
