-- complete: tasks finished: store their results and acknowledge their jobs,
-- all in one step (one call per queue for a worker's batch).
-- KEYS: 1-10 the queue's keys (QueueKeys.all()), then one result key per job
-- ARGV: per job: core, token (the delivery that ran it), stored result,
--       result ttl ms (0: keep none)
-- Reply: the number of jobs done. A job that is gone or was delivered again
--   since is a stale, duplicate run: its result is refused (the current
--   delivery's will count) and stats.stale is raised.
-- The jobs' entries go in one call per hash and sorted set, whatever the batch.
-- A job in its first delivery with nothing recorded against it (state
-- "a 1 0 0 0 0 0") has neither a reason nor an earlier result to remove.
-- (The hot path of every worker: written without the shared helpers, whose
-- definitions would cost every call.)
local n = #ARGV / 4
local cores = {}
for i = 1, n do cores[i] = ARGV[i * 4 - 3] end
local states = redis.call('HMGET', KEYS[8], unpack(cores))
local done, worn, old_results, stored = {}, {}, {}, {}
for i = 1, n do
  local state = states[i]
  if state and string.match(state, '^a (%d+) ') == ARGV[i * 4 - 2] then
    local core = cores[i]
    done[#done + 1] = core
    if state ~= 'a 1 0 0 0 0 0' then
      worn[#worn + 1] = core
      old_results[#old_results + 1] = KEYS[10 + i]
    end
    if tonumber(ARGV[i * 4]) > 0 then stored[#stored + 1] = i end
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[2], unpack(done))
  redis.call('HDEL', KEYS[7], unpack(done))
  redis.call('HDEL', KEYS[8], unpack(done))
  if #worn > 0 then
    redis.call('HDEL', KEYS[9], unpack(worn))
    redis.call('DEL', unpack(old_results))
  end
  for _, i in ipairs(stored) do
    local result = KEYS[10 + i]
    redis.call('RPUSH', result, ARGV[i * 4 - 1])
    redis.call('PEXPIRE', result, ARGV[i * 4])
  end
  redis.call('HINCRBY', KEYS[6], 'acked', #done)
end
if #done < n then redis.call('HINCRBY', KEYS[6], 'stale', n - #done) end
return #done
