-- qpeek: look at jobs of a list (the ready list or the dead letters) without
-- leasing them. A positive count looks from the oldest, a negative one from
-- the newest (newest first); a count of 0 looks at nothing.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: 1 count, 2 which list: "ready" or "dead"
-- Reply: { core1, record1, delivery1 (d), nacks1, additional1, reason1, … }
local Q = queue_keys(0)
local list = Q[ARGV[2]]
local count = tonumber(ARGV[1])
if count == 0 then return {} end
local cores
if count > 0 then
  cores = redis.call('LRANGE', list, 0, count - 1)
else
  cores = redis.call('LRANGE', list, count, -1)
  local reversed = {}
  for i = #cores, 1, -1 do reversed[#reversed + 1] = cores[i] end
  cores = reversed
end
local out = {}
for _, core in ipairs(cores) do
  local record = redis.call('HGET', Q.jobs, core)
  if record then
    local t = state_of(Q, core)
    out[#out + 1] = core
    out[#out + 1] = record
    out[#out + 1] = t.d
    out[#out + 1] = t.n
    out[#out + 1] = t.a
    out[#out + 1] = redis.call('HGET', Q.why, core) or ''
  end
end
return out
