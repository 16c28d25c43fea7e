-- enqueue: put jobs into the ready list now, whatever their state (delayed,
-- active, dequeued, dead); jobs already queued are left alone. A dead job
-- starts afresh: its reason and its count of failed attempts are cleared, and
-- it lives its time to live again from now.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: per job: core, token (ignored)
-- Reply: the number of jobs queued.
local Q = queue_keys(0)
local now = now_ms()
local count = 0
for i = 1, #ARGV, 2 do
  local core = ARGV[i]
  local t = fenced_state(Q, core, '')
  if t and t.s ~= 'q' then
    unhand(Q, core, t)
    redis.call('ZREM', Q.leased, core)
    redis.call('ZREM', Q.delayed, core)
    if t.s == 'x' then
      redis.call('LREM', Q.dead, 1, core)
      redis.call('HDEL', Q.why, core)
      t.f = 0
      local record = redis.call('HGET', Q.jobs, core)
      local fmt, expires, retry, maxdel = record_head(record)
      if expires > 0 then
        local ttl = math.max(1000, expires - core_ms(core))
        local body = string.sub(record, string.find(record, '\n', 1, true) + 1)
        redis.call('HSET', Q.jobs, core,
          fmt .. ' ' .. (now + ttl) .. ' ' .. retry .. ' ' .. maxdel .. '\n' .. body)
      end
    end
    t.s = 'q'
    save_state(Q, core, t)
    redis.call('RPUSH', Q.ready, core)
    count = count + 1
  end
end
wake(Q)
return count
