-- qstat: the state of one queue (and requeue its due delayed jobs and expired
-- leases first, so the figures are current).
-- KEYS: the 10 keys of QueueKeys.all()
-- Reply: { now_ms, len, leased, delayed, dead, oldest_ctime_ms|-1, stat1, value1, … }
local Q = queue_keys(0)
local now = now_ms()
requeue_due(Q, now)
local oldest = -1
local head = redis.call('LRANGE', Q.ready, 0, 9)
for _, core in ipairs(head) do
  if #core == 12 and redis.call('HEXISTS', Q.jobs, core) == 1 then
    oldest = core_ms(core)
    break
  end
end
local out = {now, redis.call('LLEN', Q.ready), redis.call('ZCARD', Q.leased),
  redis.call('ZCARD', Q.delayed), redis.call('LLEN', Q.dead), oldest}
for _, v in ipairs(redis.call('HGETALL', Q.stats)) do out[#out + 1] = v end
wake(Q)
return out
