-- Prepended to every script. A record is one hash, KEYS[1]:
--   st     p (in progress), c (completed), f (free: released, fence kept)
--   fence  only ever incremented
--   owner, lease (ms, server clock), lttl, ret (ms), fp, out
--   w      set while someone waits on the in-progress fence
-- Time is the server's (TIME), never the client's and never a key TTL:
-- the key's TTL is retention, which outlasts any live lease.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- wake tells waiters, if any announced themselves, that the in-progress
-- fence has ended.
local function wake(key, channel)
  if redis.call('HDEL', key, 'w') == 1 then
    redis.call('PUBLISH', channel, key)
  end
end

-- holds reports whether owner holds the current fence of the record r,
-- read as HMGET st owner fence.
local function holds(r, owner, fence)
  return r[1] == 'p' and r[2] == owner and r[3] == fence
end
