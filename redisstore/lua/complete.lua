-- ARGV: owner, fence, outcome, channel. Returns 1, or 0 if the fence is
-- not current.
local key = KEYS[1]
local r = redis.call('HMGET', key, 'st', 'owner', 'fence', 'ret', 'w')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or r[3] ~= ARGV[2] then return 0 end
redis.call('HSET', key, 'st', 'c', 'out', ARGV[3])
redis.call('PEXPIRE', key, tonumber(r[4]))
wake(key, r[5], ARGV[4])
return 1
