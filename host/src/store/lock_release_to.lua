-- End a grant if the caller still holds it; when nobody but this client
-- listens for the lock's releases, grant it at once to the next owner (a
-- waiter of this client) instead of freeing it. (Sent after lock_record.lua.)
-- KEYS[1] lock   KEYS[2] wake-up channel
-- ARGV[1] owner token   ARGV[2] message (the lock key)
-- ARGV[3] next owner token   ARGV[4] next TTL ms   ARGV[5] next holder
-- ARGV[6] fencing counter retention ms   ARGV[7] '1' when this is a resend
-- Returns {2, token} when handed over (also, on a resend, when the first
-- send handed it over),
-- {1, 0} when freed and announced, {0, 0} when the caller no longer held it.
local fence, _, _, _, bad = read_grant_of(KEYS[1], ARGV[1])
if bad then
  return bad
end
if not fence then
  local handed, expires, owner = read_lock(KEYS[1])
  if ARGV[7] == '1' and owner == ARGV[3] then
    local _, now = server_time()
    if expires > now then
      return {2, handed}
    end
  end
  return {0, 0}
end
-- Only this client's listener, or none: no other process waits.
local listening = redis.call('PUBSUB', 'SHARDNUMSUB', KEYS[2])[2]
if listening <= 1 then
  local now_us, now = server_time()
  local token = next_token(fence, now_us)
  local ttl = tonumber(ARGV[4])
  redis.call('SET', KEYS[1], granted_value(token, now + ttl, ARGV[3], ARGV[5]), 'PX', ttl + tonumber(ARGV[6]))
  return {2, token}
end
redis.call('SET', KEYS[1], string.format('%.0f', fence), 'KEEPTTL')
redis.pcall('SPUBLISH', KEYS[2], ARGV[2])
return {1, 0}
