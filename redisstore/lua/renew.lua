-- ARGV: owner, fence. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local r = redis.call('HMGET', key, 'st', 'owner', 'fence', 'lttl', 'ret')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or r[3] ~= ARGV[2] then return 0 end
local lttl = tonumber(r[4])
redis.call('HSET', key, 'lease', now_ms() + lttl)
redis.call('PEXPIRE', key, lttl + tonumber(r[5]))
return 1
