-- deljob: delete jobs wherever they are (ready, leased, delayed, dead, idle).
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. job keys
-- ARGV: per job: id, token (ignored)
-- Reply: the number of jobs deleted.
local count = 0
for i = 7, #KEYS do
  local jobkey = KEYS[i]
  local id = ARGV[(i - 7) * 2 + 1]
  local state = redis.call('HGET', jobkey, 's')
  if state then
    if state == 'q' then redis.call('LREM', KEYS[1], 1, id) end
    if state == 'x' then redis.call('LREM', KEYS[4], 1, id) end
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('DEL', jobkey)
    count = count + 1
  end
end
return count
