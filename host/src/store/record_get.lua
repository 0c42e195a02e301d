-- Read a fenced record in one step.
-- KEYS[1] record hash {fence, value}
-- Returns nil when absent, else {fence, has value (0/1), value, pttl}.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return false
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fenced record holds a ' .. kind)
end
local fields = redis.call('HMGET', KEYS[1], 'fence', 'value')
if not fields[1] then
  return redis.error_reply('WRONGTYPE fenced record without a fence')
end
return {fields[1], fields[2] and 1 or 0, fields[2] or '', redis.call('PTTL', KEYS[1])}
