-- working: the caller is still working on a leased job: extend its lease by
-- its retry time, counted from now.
-- KEYS: 1 leased, 2 job key
-- ARGV: 1 id, 2 token ('' = unfenced)
-- Reply: the retry time in ms (0 for an at-most-once job, which has no lease).
-- Errors: "NOJOB …" for an unknown job; "LEASELOST …" when the job is not
-- active, or is active under a later delivery than the caller's token.
local f = redis.call('HMGET', KEYS[2], 's', 'd', 'm')
if not f[1] then return redis.error_reply('NOJOB job ' .. ARGV[1] .. ' does not exist') end
if f[1] ~= 'a' or (ARGV[2] ~= '' and (f[2] or '0') ~= ARGV[2]) then
  return redis.error_reply('LEASELOST job ' .. ARGV[1] .. ' is not leased to this delivery')
end
local retry = tonumber(split_meta(f[3])[3])
if retry > 0 then redis.call('ZADD', KEYS[1], now_ms() + retry, ARGV[1]) end
return retry
