-- ARGV: owner, fence, channel. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local r = parse(redis.call('GET', key))
if not held(r) then
  return 0
end
redis.call('SET', key, 'f' .. r.fence .. ':', 'PX', r.ret)
ended(r, key, ARGV[3])
return 1
