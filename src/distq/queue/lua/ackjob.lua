-- ackjob: acknowledge jobs of one queue: they are done, delete them.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: per job: core, token ('' = unfenced; else the delivery number the
--       caller was given: an ack from an older delivery is refused as stale)
-- Reply: { acked, stale }
local Q = queue_keys(0)
local acked, stale = 0, 0
for i = 1, #ARGV, 2 do
  local core = ARGV[i]
  local t, fresh = fenced_state(Q, core, ARGV[i + 1])
  if t and not fresh then
    stale = stale + 1
  elseif t then
    unhand(Q, core, t)
    redis.call('ZREM', Q.leased, core)
    redis.call('ZREM', Q.delayed, core)
    if t.s == 'x' then redis.call('LREM', Q.dead, 1, core) end
    delete_job(Q, core)
    acked = acked + 1
  end
end
if acked > 0 then redis.call('HINCRBY', Q.stats, 'acked', acked) end
return {acked, stale}
