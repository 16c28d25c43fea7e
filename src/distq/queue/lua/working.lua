-- working: the caller is still working on a leased job: extend its lease by
-- its retry time, counted from now.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: 1 core, 2 token ('' = unfenced), 3 id (for the error messages)
-- Reply: the retry time in ms (0 for an at-most-once job, which has no lease).
-- Errors: "NOJOB …" for an unknown job; "LEASELOST …" when the job is not
-- active, or is active under a later delivery than the caller's token.
local Q = queue_keys(0)
local t, fresh = fenced_state(Q, ARGV[1], ARGV[2])
if not t then return redis.error_reply('NOJOB job ' .. ARGV[3] .. ' does not exist') end
if t.s ~= 'a' or not fresh then
  return redis.error_reply('LEASELOST job ' .. ARGV[3] .. ' is not leased to this delivery')
end
local _, _, retry = record_head(redis.call('HGET', Q.jobs, ARGV[1]))
if retry > 0 then redis.call('ZADD', Q.leased, now_ms() + retry, ARGV[1]) end
return retry
