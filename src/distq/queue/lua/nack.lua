-- nack: give leased jobs back at once (the head of the queue), counting a nack;
-- a job already delivered max-deliveries times goes to the dead letters instead.
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. job keys
-- ARGV: 1 why (the reason kept if the job is dead-lettered: "nacked", "worker lost", …),
--       then per job: id, token ('' = unfenced)
-- Reply: the number of jobs nacked (jobs not active, or stale tokens, are not).
local now = now_ms()
local count = 0
for i = #KEYS, 7, -1 do  -- last first: they go to the head and keep their order
  local jobkey = KEYS[i]
  local id, token = ARGV[(i - 7) * 2 + 2], ARGV[(i - 7) * 2 + 3]
  local f = redis.call('HMGET', jobkey, 's', 'd')
  if f[1] == 'a' and (token == '' or (f[2] or '0') == token) then
    redis.call('ZREM', KEYS[2], id)
    bounce(jobkey, id, KEYS[1], KEYS[4], KEYS[6], 'n', ARGV[1], now)
    count = count + 1
  end
end
wake(KEYS[1], KEYS[5])
return count
