-- dequeue: take queued jobs out of the ready list; they stay stored (idle)
-- until enqueued again, deleted, or their TTL passes.
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. job keys
-- ARGV: per job: id, token (ignored)
-- Reply: the number of jobs dequeued.
local count = 0
for i = 7, #KEYS do
  local jobkey = KEYS[i]
  local id = ARGV[(i - 7) * 2 + 1]
  if redis.call('HGET', jobkey, 's') == 'q' and redis.call('LREM', KEYS[1], 1, id) == 1 then
    redis.call('HSET', jobkey, 's', 'i')
    count = count + 1
  end
end
return count
