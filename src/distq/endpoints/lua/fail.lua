-- fail: a task raised. Retry it after a delay, or, when its retries are used
-- up (or it must not be retried), dead-letter it and store the failure as its result.
-- KEYS: 1-10 the queue's keys (QueueKeys.all()), 11 result key
-- ARGV: 1 core, 2 token, 3 backoff ms (first retry), 4 backoff cap ms,
--       5 jitter factor in [0.5, 1] (drawn by the caller), 6 retries allowed,
--       7 error text, 8 stored failure result, 9 result ttl ms (0: keep none)
-- The delay of retry n is min(cap, backoff * 2^(n-1)) * jitter.
-- Reply: the attempt number when the job will be retried; -1 when it was
--   dead-lettered; 0 when the job is gone or delivered again since (stale).
local Q = queue_keys(0)
local core = ARGV[1]
local t, fresh = fenced_state(Q, core, ARGV[2])
if not t or not fresh or t.s ~= 'a' then
  redis.call('HINCRBY', Q.stats, 'stale', 1)
  return 0
end
local now = now_ms()
redis.call('ZREM', Q.leased, core)
t.f = t.f + 1
if t.f > tonumber(ARGV[6]) then
  local reason = ARGV[7]
  if tonumber(ARGV[6]) > 0 then reason = 'failed after ' .. t.f .. ' attempts: ' .. ARGV[7] end
  dead_letter(Q, core, t, reason)
  if tonumber(ARGV[9]) > 0 then
    redis.call('DEL', KEYS[11])
    redis.call('RPUSH', KEYS[11], ARGV[8])
    redis.call('PEXPIRE', KEYS[11], ARGV[9])
  end
  return -1
end
redis.call('HSET', Q.why, core, ARGV[7])
local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (t.f - 1)) * tonumber(ARGV[5])
t.s = 'd'
save_state(Q, core, t)
redis.call('ZADD', Q.delayed, now + math.floor(delay), core)
return t.f + 1
