-- enqueue: put jobs into the ready list now, whatever their state (delayed,
-- active, dequeued, dead); jobs already queued are left alone. A dead job
-- starts afresh: its reason and its count of failed attempts are cleared.
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. job keys
-- ARGV: per job: id, token (ignored)
-- Reply: the number of jobs queued.
local count = 0
for i = 7, #KEYS do
  local jobkey = KEYS[i]
  local id = ARGV[(i - 7) * 2 + 1]
  local state = redis.call('HGET', jobkey, 's')
  if state and state ~= 'q' then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    if state == 'x' then
      redis.call('LREM', KEYS[4], 1, id)
      redis.call('HDEL', jobkey, 'r', 'rt', 'f', 'e')
      local meta = split_meta(redis.call('HGET', jobkey, 'm'))
      if tonumber(meta[4]) > 0 then redis.call('PEXPIRE', jobkey, meta[4]) end
    end
    redis.call('HSET', jobkey, 's', 'q')
    redis.call('RPUSH', KEYS[1], id)
    count = count + 1
  end
end
wake(KEYS[1], KEYS[5])
return count
