-- show: everything known about one job.
-- KEYS: 1 job key, 2 leased, 3 delayed
-- ARGV: 1 id
-- Reply: {} for an unknown job, else { now_ms, pttl_ms, lease_deadline_ms|false,
--   due_ms|false, field1, value1, … } (the job hash's fields)
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
local out = {now_ms(), redis.call('PTTL', KEYS[1]),
  redis.call('ZSCORE', KEYS[2], ARGV[1]), redis.call('ZSCORE', KEYS[3], ARGV[1])}
for _, v in ipairs(fields) do out[#out + 1] = v end
return out
