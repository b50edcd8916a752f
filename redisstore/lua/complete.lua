-- ARGV: owner, fence, outcome, channel. Returns 1, or 0 if the fence is
-- not current.
local key = KEYS[1]
local fence, _, ret, waited, fp = held(redis.call('GET', key))
if not fence then
  return 0
end
redis.call('SET', key, 'c' .. fence .. ':' .. #fp .. ':' .. fp .. ARGV[3], 'PX', ret)
ended(waited, key, ARGV[4])
return 1
