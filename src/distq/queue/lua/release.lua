-- release: hand leased jobs back to the head of the queue as if never delivered
-- (a worker shutting down, or a batch returned because another job in it
-- could not be decoded). The release is counted in u, so the fetch does not
-- count as a delivery (d - u) nor towards max-deliveries; d itself is never
-- lowered, so the next fetch gets a new, higher delivery number (fencing token).
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. job keys
-- ARGV: per job: id, token ('' = unfenced)
-- Reply: the number of jobs released.
local count = 0
for i = #KEYS, 7, -1 do
  local jobkey = KEYS[i]
  local id, token = ARGV[(i - 7) * 2 + 1], ARGV[(i - 7) * 2 + 2]
  local f = redis.call('HMGET', jobkey, 's', 'd')
  if f[1] == 'a' and (token == '' or (f[2] or '0') == token) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', jobkey, 'u', 1)
    redis.call('HSET', jobkey, 's', 'q')
    redis.call('LPUSH', KEYS[1], id)
    count = count + 1
  end
end
if count > 0 then redis.call('HINCRBY', KEYS[6], 'out', -count) end
wake(KEYS[1], KEYS[5])
return count
