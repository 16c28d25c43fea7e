-- complete: a task finished: store its result and acknowledge its job, in one step.
-- KEYS: 1-10 the queue's keys (QueueKeys.all()), 11 result key
-- ARGV: 1 core, 2 token (the delivery that ran it), 3 stored result, 4 result ttl ms (0: keep none)
-- Reply: 1 done; 0 when the job is gone or was delivered again since (a stale,
--   duplicate run: its result is refused, the current delivery's will count).
-- (The hot path of every worker: written without the shared helpers, whose
-- definitions would cost every call.)
local core = ARGV[1]
local state = redis.call('HGET', KEYS[8], core)
if not state or string.match(state, '^a (%d+) ') ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[6], 'stale', 1)
  return 0
end
redis.call('ZREM', KEYS[2], core)
redis.call('HDEL', KEYS[7], core)
redis.call('HDEL', KEYS[8], core)
redis.call('HDEL', KEYS[9], core)
redis.call('HINCRBY', KEYS[6], 'acked', 1)
if tonumber(ARGV[4]) > 0 then
  redis.call('DEL', KEYS[11])
  redis.call('RPUSH', KEYS[11], ARGV[3])
  redis.call('PEXPIRE', KEYS[11], ARGV[4])
end
return 1
