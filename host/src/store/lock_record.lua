-- Shared by the lock scripts (sent before each, after grant_common.lua):
-- how a lock is stored.
--
-- A lock is one string key:
--   '<fence> <expires> <owner> <holder>'  while granted,
--   '<fence>'                             once released,
-- where <fence> is the last fencing token issued for the name, <expires>
-- the server time (ms since 1970) at which the grant ends, <owner> the
-- holder's secret token (no spaces) and <holder> free text for operators.
-- The key lives until its grant ends plus the fencing counter's retention,
-- so the counter outlives every grant, released or expired.

-- The fields of a lock's value as GET (or SET ... GET) answered it: fence
-- (nil when absent), expires, owner and holder (nil when released), then a
-- reason when the key holds anything tollgate did not write (nothing else
-- is returned then), then the fence as stored (text: writing it back needs
-- no number formatting, which is slow in the server's Lua).
local function lock_fields(value)
  if type(value) == 'table' then
    return nil, nil, nil, nil, 'a value of another type'
  end
  if not value then
    return nil
  end
  local a = string.find(value, ' ', 1, true)
  if not a then
    local fence = tonumber(value)
    if not fence then
      return nil, nil, nil, nil, 'a value tollgate did not write'
    end
    return fence, nil, nil, nil, nil, value
  end
  local b = string.find(value, ' ', a + 1, true)
  local c = b and string.find(value, ' ', b + 1, true)
  local fence_text = string.sub(value, 1, a - 1)
  local fence = tonumber(fence_text)
  local expires = b and tonumber(string.sub(value, a + 1, b - 1))
  if not (c and fence and expires) then
    return nil, nil, nil, nil, 'a value tollgate did not write'
  end
  return fence, expires, string.sub(value, b + 1, c - 1), string.sub(value, c + 1), nil, fence_text
end

-- Reads the lock at `key` (see lock_fields).
local function read_lock(key)
  return lock_fields(redis.pcall('GET', key))
end

local function wrong_type(reason)
  return redis.error_reply('WRONGTYPE lock key holds ' .. reason)
end

local function granted_value(fence, expires, owner, holder)
  return string.format('%d %d %s %s', fence, expires, owner, holder)
end

-- Reads the grant at `key` if `owner` holds it now: fence, expires, holder,
-- the server time in ms, nothing, the server time in µs and the fence as
-- stored; nothing when it does not; an error reply as the fifth value when
-- the key holds anything tollgate did not write.
local function read_grant_of(key, owner)
  local fence, expires, found, holder, bad, fence_text = read_lock(key)
  if bad then
    return nil, nil, nil, nil, wrong_type(bad)
  end
  if found ~= owner then
    return nil
  end
  local now_us, now = server_time()
  if expires <= now then
    return nil
  end
  return fence, expires, holder, now, nil, now_us, fence_text
end

-- Waiting processes take turns: `turns` (a sorted set beside the lock)
-- holds the ids of the processes (clients) with a waiter, oldest first. A
-- release gives the turn to the first and wakes only that process, so the
-- others do not each try for the lock. Queues `process` unless queued
-- (keeping its place); the set lives `life` ms past its last addition, so
-- the entries of a process that died do not stay for ever.
-- Every step on the queue is a pcall: a server that refuses sorted-set
-- commands (an ACL), or a key of another type there, leaves waiters to
-- poll and never fails a grant or a release (which may have written by then).
local function take_a_turn(turns, process, now_us, life)
  if redis.pcall('ZADD', turns, 'NX', now_us, process) == 1 then
    redis.pcall('PEXPIRE', turns, life)
  end
end

-- The process whose turn comes next, taken off the queue; nil when none
-- (or when the queue cannot be read).
local function next_turn(turns)
  return redis.pcall('ZPOPMIN', turns)[1]
end

-- The process whose turn comes next, left on the queue; nil when none.
local function first_turn(turns)
  return redis.pcall('ZRANGE', turns, 0, 0)[1]
end

-- Takes `process` off the queue.
local function leave_turns(turns, process)
  redis.pcall('ZREM', turns, process)
end

-- After a release of the lock at `key` that left `fence_text`: gives the
-- turn to the process first in line and wakes it, on the sharded channel
-- `<key>:waiters` (same hash tag as the lock, so the same cluster slot),
-- with the message '<key>\n<process>:<fence>'. The caller's `process`,
-- while it has waiters (`waits` '1'), lines up again unless the turn is its
-- own; one without waiters has its turn (if it comes) given to the next.
-- The wake-up is a pcall: the release stands and is reported even when the
-- server refuses SPUBLISH (an ACL without the channel); waiters poll then.
-- `life`: how long a turn is kept, ms (needed with `waits` '1' only).
-- Returns the release's reply: 1 when no process waits, 2 when the turn is
-- the caller's process's, 3 when another's.
local function give_turn(key, fence_text, process, waits, life)
  local turns = key .. ':turns'
  local turn = next_turn(turns)
  if turn == process and waits ~= '1' then
    turn = next_turn(turns)
  end
  if not turn then
    return 1
  end
  redis.pcall('SPUBLISH', key .. ':waiters', key .. '\n' .. turn .. ':' .. fence_text)
  if turn == process then
    return 2
  end
  if waits == '1' then
    take_a_turn(turns, process, server_time(), tonumber(life))
  end
  return 3
end
