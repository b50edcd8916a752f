-- ARGV: owner, fence, channel. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local r = redis.call('HMGET', key, 'st', 'owner', 'fence', 'ret')
if not holds(r, ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', key, 'st', 'f')
redis.call('HDEL', key, 'owner', 'lease', 'fp', 'out')
redis.call('PEXPIRE', key, tonumber(r[4]))
wake(key, ARGV[3])
return 1
