-- dequeue: take queued jobs out of the ready list; they stay stored (idle)
-- until enqueued again, deleted, or their TTL passes.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: per job: core, token (ignored)
-- Reply: the number of jobs dequeued.
local Q = queue_keys(0)
local count = 0
for i = 1, #ARGV, 2 do
  local core = ARGV[i]
  local t = fenced_state(Q, core, '')
  if t and t.s == 'q' and redis.call('LREM', Q.ready, 1, core) == 1 then
    t.s = 'i'
    save_state(Q, core, t)
    count = count + 1
  end
end
return count
