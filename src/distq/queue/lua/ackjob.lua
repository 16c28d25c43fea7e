-- ackjob: acknowledge jobs of one queue: they are done, delete them.
-- KEYS: 1 ready, 2 leased, 3 delayed, 4 dead, 5 wake, 6 stats, 7.. one job key per job
-- ARGV: per job: id, token ('' = unfenced; else the delivery number the caller
--       was given: an ack from an older delivery is refused as stale)
-- Reply: { acked, stale }
local acked, stale = 0, 0
for i = 7, #KEYS do
  local jobkey = KEYS[i]
  local id, token = ARGV[(i - 7) * 2 + 1], ARGV[(i - 7) * 2 + 2]
  local f = redis.call('HMGET', jobkey, 's', 'd')
  if f[1] then
    if token ~= '' and (f[2] or '0') ~= token then
      stale = stale + 1
    else
      redis.call('ZREM', KEYS[2], id)
      redis.call('ZREM', KEYS[3], id)
      if f[1] == 'x' then redis.call('LREM', KEYS[4], 1, id) end
      redis.call('DEL', jobkey)
      acked = acked + 1
    end
  end
end
if acked > 0 then redis.call('HINCRBY', KEYS[6], 'acked', acked) end
return {acked, stale}
