-- deljob: delete jobs wherever they are (ready, leased, delayed, dead, idle).
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: per job: core, token (ignored)
-- Reply: the number of jobs deleted.
local Q = queue_keys(0)
local count = 0
for i = 1, #ARGV, 2 do
  local core = ARGV[i]
  local t = fenced_state(Q, core, '')
  if t then
    unhand(Q, core, t)
    if t.s == 'q' then redis.call('LREM', Q.ready, 1, core) end
    if t.s == 'x' then redis.call('LREM', Q.dead, 1, core) end
    redis.call('ZREM', Q.leased, core)
    redis.call('ZREM', Q.delayed, core)
    delete_job(Q, core)
    count = count + 1
  end
end
return count
