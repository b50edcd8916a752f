-- ARGV: owner, fence, outcome, channel. Returns 1, or 0 if the fence is
-- not current.
local key = KEYS[1]
local r = parse(redis.call('GET', key))
if not held(r) then
  return 0
end
redis.call('SET', key, 'c' .. r.fence .. ':' .. #r.fp .. ':' .. r.fp .. ARGV[3], 'PX', r.ret)
ended(r, key, ARGV[4])
return 1
