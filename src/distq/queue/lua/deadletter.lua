-- deadletter: move jobs to the queue's dead letters, keeping the reason.
-- Used for jobs that cannot be run (a body that does not decode, an unknown
-- task): they are kept, never dropped, and can be enqueued again by hand.
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. job keys
-- ARGV: 1 reason, then per job: id, token ('' = unfenced)
-- Reply: the number of jobs moved.
local now = now_ms()
local count = 0
for i = 7, #KEYS do
  local jobkey = KEYS[i]
  local id, token = ARGV[(i - 7) * 2 + 2], ARGV[(i - 7) * 2 + 3]
  local f = redis.call('HMGET', jobkey, 's', 'd')
  if f[1] and f[1] ~= 'x' and (token == '' or (f[2] or '0') == token) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    if f[1] == 'q' then redis.call('LREM', KEYS[1], 1, id) end
    dead_letter(jobkey, id, KEYS[4], KEYS[6], ARGV[1], now)
    count = count + 1
  end
end
return count
