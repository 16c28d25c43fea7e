-- show: everything known about one job.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: 1 core
-- Reply: {} for an unknown (or expired) job, else { now_ms, record, state,
--   reason, lease_deadline_ms|false, due_ms|false } where state is the st
--   entry ("" for a job queued and never fetched) and reason the why entry.
local Q = queue_keys(0)
local core = ARGV[1]
local record = redis.call('HGET', Q.jobs, core)
if not record then return {} end
local now = now_ms()
local state = redis.call('HGET', Q.st, core) or ''
local _, expires = record_head(record)
if expires > 0 and expires <= now and string.sub(state, 1, 1) ~= 'x' then return {} end
return {now, record, state, redis.call('HGET', Q.why, core) or '',
  redis.call('ZSCORE', Q.leased, core), redis.call('ZSCORE', Q.delayed, core)}
