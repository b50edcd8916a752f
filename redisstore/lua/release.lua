-- ARGV: owner, fence, channel. Returns 1, or 0 if the fence is not current.
local key = KEYS[1]
local fence, _, ret, waited = held(redis.call('GET', key))
if not fence then
  return 0
end
redis.call('SET', key, 'f' .. fence .. ':', 'PX', ret)
ended(waited, key, ARGV[3])
return 1
