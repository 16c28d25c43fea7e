-- release: hand leased jobs back to the head of the queue as if never delivered
-- (a worker shutting down, or a batch returned because another job in it
-- could not be decoded). The release is counted in u, so the fetch does not
-- count as a delivery (d - u) nor towards max-deliveries; d itself is never
-- lowered, so the next fetch gets a new, higher delivery number (fencing token).
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: per job: core, token ('' = unfenced)
-- Reply: the number of jobs released.
local Q = queue_keys(0)
local count = 0
for i = #ARGV - 1, 1, -2 do
  local core = ARGV[i]
  local t, fresh = fenced_state(Q, core, ARGV[i + 1])
  if t and fresh and t.s == 'a' then
    unhand(Q, core, t)
    redis.call('ZREM', Q.leased, core)
    t.u = t.u + 1
    t.s = 'q'
    save_state(Q, core, t)
    redis.call('LPUSH', Q.ready, core)
    count = count + 1
  end
end
if count > 0 then redis.call('HINCRBY', Q.stats, 'out', -count) end
wake(Q)
return count
