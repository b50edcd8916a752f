-- ARGV: fence. Returns 1 and marks the record as waited on if it is still
-- in progress with that fence; 0 if it has moved on.
local key = KEYS[1]
local r = parse(redis.call('GET', key))
if not r or r.st ~= 'p' or r.fence ~= tonumber(ARGV[1]) then
  return 0
end
if not r.w then
  redis.call('SET', key, in_progress(r.fence, r.lttl, r.ret, true, r.owner, r.fp), 'KEEPTTL')
end
return 1
