-- ARGV: owner, fingerprint, lease ms, retention ms, channel.
-- Returns {1, fence, took_over} acquired, {2, outcome} completed,
-- {3, fence, ms left} in flight, {4} mismatch.
local key = KEYS[1]
local owner, fp, lttl, ret, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local r = redis.call('HMGET', key, 'st', 'fp', 'lease', 'fence', 'out')
local now = now_ms()
local took_over = 0
if r[1] == 'c' then
  if r[2] ~= fp then return {4} end
  return {2, r[5]}
elseif r[1] == 'p' then
  if r[2] ~= fp then return {4} end
  local left = tonumber(r[3]) - now
  if left > 0 then return {3, tonumber(r[4]), left} end
  took_over = 1
  wake(key, channel)
end
local fence = redis.call('HINCRBY', key, 'fence', 1)
redis.call('HSET', key, 'st', 'p', 'owner', owner, 'fp', fp, 'lease', now + lttl, 'lttl', lttl, 'ret', ret)
redis.call('HDEL', key, 'out')
redis.call('PEXPIRE', key, lttl + ret)
return {1, fence, took_over}
