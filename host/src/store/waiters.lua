-- Shared by the scripts that refuse a caller who will wait: marks the
-- object's waiters key for `wait_ms` (if longer than it already has), so the
-- release publishes a wake-up. Refuses (WRONGTYPE) a key that holds anything
-- but tollgate's marker '1', and then writes nothing.
local function mark_waiting(key, wait_ms)
  local marker = redis.pcall('GET', key)
  if type(marker) == 'table' or (marker and marker ~= '1') then
    return redis.error_reply('WRONGTYPE waiters marker holds a value tollgate did not write')
  end
  if redis.call('PTTL', key) < wait_ms then
    redis.call('SET', key, '1', 'PX', wait_ms)
  end
end

