-- ARGV: owner, fence. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local r = parse(redis.call('GET', key))
if not held(r) then
  return 0
end
redis.call('PEXPIRE', key, r.lttl + r.ret)
return 1
