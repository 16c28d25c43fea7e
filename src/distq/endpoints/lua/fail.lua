-- fail: a task raised. Retry it after a delay, or, when its retries are used
-- up (or it must not be retried), dead-letter it and store the failure as its result.
-- KEYS: 1 job key, 2 ready, 3 leased, 4 delayed, 5 dead, 6 stats, 7 result key
-- ARGV: 1 id, 2 token, 3 backoff ms (first retry), 4 backoff cap ms,
--       5 jitter factor in [0.5, 1] (drawn by the caller), 6 retries allowed,
--       7 error text, 8 stored failure result, 9 result ttl ms (0: keep none)
-- The delay of retry n is min(cap, backoff * 2^(n-1)) * jitter.
-- Reply: the attempt number when the job will be retried; -1 when it was
--   dead-lettered; 0 when the job is gone or delivered again since (stale).
local f = redis.call('HMGET', KEYS[1], 's', 'd')
if f[1] ~= 'a' or (f[2] or '0') ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[6], 'stale', 1)
  return 0
end
local now = now_ms()
redis.call('ZREM', KEYS[3], ARGV[1])
local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HSET', KEYS[1], 'e', ARGV[7])
if failures > tonumber(ARGV[6]) then
  local reason = ARGV[7]
  if tonumber(ARGV[6]) > 0 then reason = 'failed after ' .. failures .. ' attempts: ' .. ARGV[7] end
  dead_letter(KEYS[1], ARGV[1], KEYS[5], KEYS[6], reason, now)
  if tonumber(ARGV[9]) > 0 then
    redis.call('DEL', KEYS[7])
    redis.call('RPUSH', KEYS[7], ARGV[8])
    redis.call('PEXPIRE', KEYS[7], ARGV[9])
  end
  return -1
end
local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (failures - 1)) * tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 's', 'd')
redis.call('ZADD', KEYS[4], now + math.floor(delay), ARGV[1])
return failures + 1
