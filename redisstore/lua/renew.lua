-- ARGV: owner, fence. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local fence, lttl, ret = held(redis.call('GET', key))
if not fence then
  return 0
end
redis.call('PEXPIRE', key, tonumber(lttl) + tonumber(ret))
return 1
