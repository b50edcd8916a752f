-- The claim's second step, when its SET … NX GET found a record in
-- progress or free. ARGV: owner, fingerprint, lease ms, retention ms,
-- channel. Returns {1, fence, took_over} acquired, {2, outcome} completed,
-- {3, fence, ms left} in flight, {4} mismatch.
local key, owner, fp = KEYS[1], ARGV[1], ARGV[2]
local lttl, ret = tonumber(ARGV[3]), tonumber(ARGV[4])
local r = parse(redis.call('GET', key))
local fence, took_over = 1, 0
if r then
  if r.st ~= 'f' and r.fp ~= fp then
    return {4}
  end
  if r.st == 'c' then
    return {2, r.out}
  end
  if r.st == 'p' then
    local left = redis.call('PTTL', key) - r.ret
    if left > 0 then
      return {3, r.fence, left}
    end
    took_over = 1
    ended(r.w, key, ARGV[5])
  end
  fence = r.fence + 1
end
redis.call('SET', key, in_progress(fence, lttl, ret, false, owner, fp), 'PX', lttl + ret)
return {1, fence, took_over}
