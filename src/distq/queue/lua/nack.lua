-- nack: give leased jobs back at once (the head of the queue), counting a nack;
-- a job already delivered max-deliveries times goes to the dead letters instead.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: 1 why (the reason kept if the job is dead-lettered: "nacked", "worker lost", …),
--       then per job: core, token ('' = unfenced)
-- Reply: the number of jobs nacked (jobs not active, or stale tokens, are not).
local Q = queue_keys(0)
local count = 0
for i = #ARGV - 1, 2, -2 do  -- last first: they go to the head and keep their order
  local core = ARGV[i]
  local t, fresh = fenced_state(Q, core, ARGV[i + 1])
  if t and fresh and t.s == 'a' then
    unhand(Q, core, t)
    redis.call('ZREM', Q.leased, core)
    bounce(Q, core, t, 'n', ARGV[1])
    count = count + 1
  end
end
wake(Q)
return count
