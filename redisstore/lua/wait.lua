-- ARGV: fence. Returns 1 and marks the record as waited on if it is still
-- in progress with that fence; 0 if it has moved on.
local key = KEYS[1]
local r = redis.call('HMGET', key, 'st', 'fence')
if r[1] == 'p' and r[2] == ARGV[1] then
  redis.call('HSET', key, 'w', 1)
  return 1
end
return 0
