-- deadletter: move jobs to the queue's dead letters, keeping the reason.
-- Used for jobs that cannot be run (a body that does not decode, an unknown
-- task): they are kept, never dropped, and can be enqueued again by hand.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: 1 reason, then per job: core, token ('' = unfenced)
-- Reply: the number of jobs moved.
local Q = queue_keys(0)
local count = 0
for i = 2, #ARGV, 2 do
  local core = ARGV[i]
  local t, fresh = fenced_state(Q, core, ARGV[i + 1])
  if t and fresh and t.s ~= 'x' then
    unhand(Q, core, t)
    redis.call('ZREM', Q.leased, core)
    redis.call('ZREM', Q.delayed, core)
    if t.s == 'q' then redis.call('LREM', Q.ready, 1, core) end
    dead_letter(Q, core, t, ARGV[1])
    count = count + 1
  end
end
return count
