-- complete: a task finished: store its result and acknowledge its job, in one step.
-- KEYS: 1 job key, 2 leased, 3 stats, 4 result key
-- ARGV: 1 id, 2 token (the delivery that ran it), 3 stored result, 4 result ttl ms (0: keep none)
-- Reply: 1 done; 0 when the job is gone or was delivered again since (a stale,
--   duplicate run: its result is refused, the current delivery's will count).
local f = redis.call('HMGET', KEYS[1], 's', 'd')
if f[1] ~= 'a' or (f[2] or '0') ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[3], 'stale', 1)
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[3], 'acked', 1)
if tonumber(ARGV[4]) > 0 then
  redis.call('DEL', KEYS[4])
  redis.call('RPUSH', KEYS[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
return 1
