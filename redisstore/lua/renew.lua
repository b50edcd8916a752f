-- ARGV: owner, fence. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local r = redis.call('HMGET', key, 'st', 'owner', 'fence', 'lttl', 'ret')
if not holds(r, ARGV[1], ARGV[2]) then return 0 end
local lttl = tonumber(r[4])
redis.call('HSET', key, 'lease', now_ms() + lttl)
redis.call('PEXPIRE', key, lttl + tonumber(r[5]))
return 1
