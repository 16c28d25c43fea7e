-- complete: tasks finished: store their results and acknowledge their jobs,
-- all in one step (one call per queue for a worker's batch).
-- KEYS: 1-10 the queue's keys (QueueKeys.all()), then one result key per job
-- ARGV: per job: core, token (the delivery that ran it), stored result,
--       result ttl ms (0: keep none)
-- Reply: the number of jobs done. A job that is gone or was delivered again
--   since is a stale, duplicate run: its result is refused (the current
--   delivery's will count) and stats.stale is raised.
-- (The hot path of every worker: written without the shared helpers, whose
-- definitions would cost every call.)
local done, stale = 0, 0
for i = 1, #ARGV / 4 do
  local core, token, ttl = ARGV[i * 4 - 3], ARGV[i * 4 - 2], tonumber(ARGV[i * 4])
  local state = redis.call('HGET', KEYS[8], core)
  if not state or string.match(state, '^a (%d+) ') ~= token then
    stale = stale + 1
  else
    redis.call('ZREM', KEYS[2], core)
    redis.call('HDEL', KEYS[7], core)
    redis.call('HDEL', KEYS[8], core)
    redis.call('HDEL', KEYS[9], core)
    if ttl > 0 then
      local result = KEYS[10 + i]
      redis.call('DEL', result)
      redis.call('RPUSH', result, ARGV[i * 4 - 1])
      redis.call('PEXPIRE', result, ttl)
    end
    done = done + 1
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[6], 'acked', done) end
if stale > 0 then redis.call('HINCRBY', KEYS[6], 'stale', stale) end
return done
