-- Write (or delete) a fenced record in one step, if the write's fencing
-- token is at least the highest the record has accepted.
-- KEYS[1] record hash {fence, value}; after a delete {fence} alone.
-- ARGV[1] token (decimal u64)   ARGV[2] '1' write, '0' delete
-- ARGV[3] the value   ARGV[4] ttl ms ('0': none): of the record for a
--         write; for a delete, of a tombstone made where there was no key
-- Returns {1, existed (0/1)} when written, {0, highest (text)} when stale.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fenced record holds a ' .. kind)
end
local fields = redis.call('HMGET', KEYS[1], 'fence', 'value')
local highest = fields[1]
if kind == 'hash' and not highest then
  return redis.error_reply('WRONGTYPE fenced record without a fence')
end
-- Tokens are compared as decimal text: exact for all of u64, where Lua's
-- numbers are not.
local token = ARGV[1]
if highest and (#highest > #token or (#highest == #token and highest > token)) then
  return {0, highest}
end
local existed = fields[2] and 1 or 0
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'fence', token, 'value', ARGV[3])
  if ARGV[4] == '0' then
    redis.call('PERSIST', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
else
  if kind == 'none' then
    -- Nothing to delete, but remember the token for a while: no older
    -- writer may create the record after this.
    redis.call('HSET', KEYS[1], 'fence', token)
    if ARGV[4] ~= '0' then
      redis.call('PEXPIRE', KEYS[1], ARGV[4])
    end
  else
    redis.call('HDEL', KEYS[1], 'value')
    redis.call('HSET', KEYS[1], 'fence', token)
  end
end
return {1, existed}
