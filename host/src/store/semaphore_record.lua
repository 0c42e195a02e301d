-- Shared by the semaphore scripts (sent before each, after
-- grant_common.lua): how a semaphore is stored.
--
-- A semaphore is one hash key:
--   fence        the last fencing token issued for the name
--   p:<owner>    '<expires> <count> <fence> <holder>' for each grant
-- where <expires> is the server time (ms since 1970) at which the grant
-- ends, <count> the permits it holds, <fence> its fencing token and
-- <holder> free text for operators. Grants past their end are removed by
-- the next script that reads the key. The key lives until its latest grant
-- ends plus the fencing counter's retention.

local function wrong_type(reason)
  return redis.error_reply('WRONGTYPE semaphore key holds ' .. reason)
end

local function grant_value(expires, count, fence, holder)
  return string.format('%d %d %d %s', expires, count, fence, holder)
end

-- Reads the semaphore at `key` at server time `now` (ms), removing ended
-- grants: the live grants by owner ({expires, count, fence, holder}), the
-- permits they hold, the last fencing token (nil for a new key) and the
-- latest end among them (0 when none); or nil and an error reply when the
-- key holds anything tollgate did not write.
local function read_grants(key, now)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then
    return {}, 0, nil, 0
  end
  if kind ~= 'hash' then
    return nil, 0, nil, 0, wrong_type('a ' .. kind)
  end
  local all = redis.call('HGETALL', key)
  local grants, used, fence, latest = {}, 0, nil, 0
  for i = 1, #all, 2 do
    local field, value = all[i], all[i + 1]
    if field == 'fence' then
      fence = tonumber(value)
    elseif string.sub(field, 1, 2) == 'p:' then
      local e, c, f, holder = string.match(value, '^(%d+) (%d+) (%d+) (.*)$')
      if not holder then
        return nil, 0, nil, 0, wrong_type('a grant tollgate did not write')
      end
      local expires = tonumber(e)
      if expires <= now then
        redis.call('HDEL', key, field)
      else
        local count = tonumber(c)
        grants[string.sub(field, 3)] = {expires = expires, count = count, fence = tonumber(f), holder = holder}
        used = used + count
        if expires > latest then
          latest = expires
        end
      end
    else
      return nil, 0, nil, 0, wrong_type('a field tollgate did not write')
    end
  end
  if not fence then
    return nil, 0, nil, 0, wrong_type('no fencing token')
  end
  return grants, used, fence, latest
end

