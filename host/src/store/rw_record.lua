-- Shared by the read-write lock scripts (sent before each, after
-- grant_common.lua): how a read-write lock is stored.
--
-- A read-write lock is one hash key:
--   fence         the last fencing token issued for the name
--   r:<owner>     '<expires> <fence> <holder>' for each reader
--   w:<owner>     '<expires> <fence> <holder>' for the writer (one at most)
--   want:<owner>  '<expires>' for each writer waiting: while one lives, no
--                 new reader is let in, so readers cannot starve writers
-- where <expires> is the server time (ms since 1970) at which the grant or
-- the wish ends. Ended entries are removed by the next script that reads
-- the key. The key lives until its latest entry ends plus the fencing
-- counter's retention.

local function wrong_type(reason)
  return redis.error_reply('WRONGTYPE read-write lock key holds ' .. reason)
end

local function grant_value(expires, fence, holder)
  return string.format('%d %d %s', expires, fence, holder)
end

-- Reads the lock at `key` at server time `now` (ms), removing ended
-- entries. Returns a table {fence, readers, writer, wants, latest}:
-- readers by owner and the writer ({owner, expires, fence, holder} or nil)
-- as grants {expires, fence, holder}, wants by owner as their end, latest
-- the last end of any entry (0 when none); or nil and an error reply when
-- the key holds anything tollgate did not write.
local function read_rw(key, now)
  local state = {fence = nil, readers = {}, writer = nil, wants = {}, latest = 0}
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then
    return state
  end
  if kind ~= 'hash' then
    return nil, wrong_type('a ' .. kind)
  end
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local field, value = all[i], all[i + 1]
    local prefix, owner = string.match(field, '^([a-z]+):(.*)$')
    if field == 'fence' then
      state.fence = tonumber(value)
    elseif prefix == 'r' or prefix == 'w' then
      local e, f, holder = string.match(value, '^(%d+) (%d+) (.*)$')
      if not holder then
        return nil, wrong_type('a grant tollgate did not write')
      end
      local expires = tonumber(e)
      if expires <= now then
        redis.call('HDEL', key, field)
      else
        local grant = {expires = expires, fence = tonumber(f), holder = holder}
        if prefix == 'r' then
          state.readers[owner] = grant
        else
          grant.owner = owner
          state.writer = grant
        end
        state.latest = math.max(state.latest, expires)
      end
    elseif prefix == 'want' then
      local expires = tonumber(value)
      if not expires then
        return nil, wrong_type('a wish tollgate did not write')
      end
      if expires <= now then
        redis.call('HDEL', key, field)
      else
        state.wants[owner] = expires
        state.latest = math.max(state.latest, expires)
      end
    else
      return nil, wrong_type('a field tollgate did not write')
    end
  end
  if not state.fence then
    return nil, wrong_type('no fencing token')
  end
  return state
end

-- The ms until the first of the grants in the way ends (-1: none); for a
-- reader (`with_wishes`), the wishes to write too, which end unannounced
-- when their writer's wait does.
local function first_end(state, now, with_wishes)
  local first = -1
  local function consider(expires)
    if first < 0 or expires - now < first then
      first = expires - now
    end
  end
  for _, grant in pairs(state.readers) do
    consider(grant.expires)
  end
  if state.writer then
    consider(state.writer.expires)
  end
  if with_wishes then
    for _, expires in pairs(state.wants) do
      consider(expires)
    end
  end
  return first
end
