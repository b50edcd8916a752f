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

-- wake ends the wait of anyone who announced themselves (w) on the
-- in-progress fence that the caller is ending.
local function wake(key, w, channel)
  if w then
    redis.call('HDEL', key, 'w')
    redis.call('PUBLISH', channel, key)
  end
end
