-- ARGV: owner, fingerprint, lease ms, retention ms, channel.
-- Returns {1, fence, took_over} acquired, {2, outcome} completed,
-- {3, fence, ms left} in flight, {4} mismatch.
local key, fp = KEYS[1], ARGV[2]
local r = redis.call('HMGET', key, 'st', 'fp', 'out')
local st = r[1]
if st == 'c' then -- the replay path: no clock needed
  if r[2] ~= fp then return {4} end
  return {2, r[3]}
end
local now = now_ms()
local took_over = 0
if st == 'p' then
  if r[2] ~= fp then return {4} end
  local h = redis.call('HMGET', key, 'lease', 'fence', 'w')
  local left = tonumber(h[1]) - now
  if left > 0 then return {3, tonumber(h[2]), left} end
  took_over = 1
  wake(key, h[3], ARGV[5])
end
local lttl, ret = tonumber(ARGV[3]), tonumber(ARGV[4])
local fence = redis.call('HINCRBY', key, 'fence', 1)
redis.call('HSET', key, 'st', 'p', 'owner', ARGV[1], 'fp', fp, 'lease', now + lttl, 'lttl', lttl, 'ret', ret)
redis.call('PEXPIRE', key, lttl + ret)
return {1, fence, took_over}
