-- qstat: the state of one queue (and requeue its due delayed jobs and expired
-- leases first, so the figures are current).
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats
-- ARGV: 1 job-key prefix
-- Reply: { now_ms, len, leased, delayed, dead, oldest_ctime_ms|-1, stat1, value1, … }
local now = now_ms()
requeue_due(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], ARGV[1], now)
local oldest = -1
local head = redis.call('LRANGE', KEYS[1], 0, 9)
for _, id in ipairs(head) do
  local core = core_of(id)
  if core then
    local meta = job_meta(ARGV[1] .. core)
    if meta then oldest = tonumber(meta[2]); break end
  end
end
local out = {now, redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('LLEN', KEYS[4]), oldest}
for _, v in ipairs(redis.call('HGETALL', KEYS[6])) do out[#out + 1] = v end
wake(KEYS[1], KEYS[5])
return out
