-- Prepended to every script. A record is one string, KEYS[1]:
--   p<fence>:<lease ms>:<retention ms>:<waited>:<len(owner)>:<owner><fingerprint>
--   c<fence>:<len(fingerprint)>:<fingerprint><outcome>
--   f<fence>:      free: released, its fence kept
-- The fence only ever grows while the key exists. The key's TTL is the
-- retention, plus the lease while in progress, set with every change: an
-- in-progress record outlives its lease by the retention, and the lease
-- left is the key's PTTL less the retention. Time is the server's, never
-- the client's, and nothing is dropped when a lease runs out.
-- The claim's first step, a plain SET … NX GET from the client, writes a
-- new record in the same format.

-- progress reads an in-progress record's fields, as strings but waited:
-- fence, lease ms, retention ms, waited, owner, fingerprint. It builds no
-- table: it runs on every completion.
local function progress(v)
  local fence, lttl, ret, w, olen, at = string.match(v, '^p(%d+):(%d+):(%d+):([01]):(%d+):()')
  local fp_at = at + tonumber(olen)
  return fence, lttl, ret, w == '1', string.sub(v, at, fp_at - 1), string.sub(v, fp_at)
end

local function parse(v)
  if not v then
    return nil
  end
  local st = string.sub(v, 1, 1)
  if st == 'p' then
    local fence, lttl, ret, w, owner, fp = progress(v)
    return {st = 'p', fence = tonumber(fence), lttl = tonumber(lttl), ret = tonumber(ret), w = w, owner = owner, fp = fp}
  elseif st == 'c' then
    local fence, flen, at = string.match(v, '^c(%d+):(%d+):()')
    flen = tonumber(flen)
    return {st = 'c', fence = tonumber(fence), fp = string.sub(v, at, at + flen - 1), out = string.sub(v, at + flen)}
  end
  return {st = 'f', fence = tonumber(string.match(v, '^f(%d+):'))}
end

local function in_progress(fence, lttl, ret, waited, owner, fp)
  return 'p' .. fence .. ':' .. lttl .. ':' .. ret .. ':' .. (waited and '1' or '0') .. ':' .. #owner .. ':' .. owner .. fp
end

-- held reads v as an in-progress record under the caller's owner and fence
-- (ARGV[1], ARGV[2]) and returns its fence, lease ms, retention ms, waited
-- flag and fingerprint; nil if v is anything else.
local function held(v)
  if not v or string.sub(v, 1, 1) ~= 'p' then
    return nil
  end
  local fence, lttl, ret, w, owner, fp = progress(v)
  if fence ~= ARGV[2] or owner ~= ARGV[1] then
    return nil
  end
  return fence, lttl, ret, w, fp
end

-- ended publishes the key's end of an in-progress fence, if anyone
-- announced they wait on it.
local function ended(waited, key, channel)
  if waited then
    redis.call('PUBLISH', channel, key)
  end
end
