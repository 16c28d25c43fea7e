-- addjob: add one or more jobs to a queue.
-- KEYS: 1 ready, 2 delayed, 3 wake, 4 stats, 5.. one job key per job
-- ARGV: 1 maxlen (0 = none), 2 retry_ms, 3 ttl_ms, 4 delay_ms, 5 maxdel (0 = none),
--       then per job: id, fmt, body
-- Reply: the number of jobs created (a resent call finds its jobs and creates none).
-- Errors: "QUEUEFULL <queue length>" when maxlen would be exceeded (nothing added).
-- Only the jobs that do not exist yet count against maxlen, so a resent call
-- whose first attempt created the jobs is not refused.
local maxlen = tonumber(ARGV[1])
local retry, ttl, delay = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local njobs = #KEYS - 4
local missing = {}
for i = 1, njobs do
  if redis.call('EXISTS', KEYS[4 + i]) == 0 then missing[#missing + 1] = i end
end
if maxlen > 0 and #missing > 0 then
  local len = redis.call('LLEN', KEYS[1])
  if len + #missing > maxlen then
    return redis.error_reply('QUEUEFULL queue holds ' .. len .. ' jobs, maxlen is ' .. maxlen)
  end
end
-- (The server's clock, read here rather than through the shared helpers, which
-- would cost their definition at every call of this hot script.)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local created = 0
for _, i in ipairs(missing) do
  local jobkey = KEYS[4 + i]
  local base = 5 + (i - 1) * 3
  local id, fmt, body = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local state = 'q'
  if delay > 0 then state = 'd' end
  redis.call('HSET', jobkey, 'b', body, 's', state,
    'm', fmt .. ' ' .. now .. ' ' .. retry .. ' ' .. ttl .. ' ' .. delay .. ' ' .. ARGV[5])
  redis.call('PEXPIRE', jobkey, ttl)
  if delay > 0 then
    redis.call('ZADD', KEYS[2], now + delay, id)
  else
    redis.call('RPUSH', KEYS[1], id)
  end
  created = created + 1
end
if created > 0 then
  redis.call('HINCRBY', KEYS[4], 'in', created)
  -- Wake a blocked fetcher for delayed jobs too: it runs getjob again and
  -- learns the new, nearer due time.
  if redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], 1) end
end
return created
