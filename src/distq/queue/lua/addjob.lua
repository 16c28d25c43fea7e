-- addjob: add one or more jobs to a queue.
-- KEYS: 1 ready, 2 delayed, 3 wake, 4 stats, 5 jobs, 6 st, 7 leased, 8 waiting
-- ARGV: 1 maxlen (0 = none), 2 retry_ms, 3 ttl_ms, 4 delay_ms, 5 maxdel (0 = none),
--       then per job: core, fmt, body
-- Reply: the number of jobs created (a resent call finds its jobs and creates none).
-- Errors: "QUEUEFULL <queue length>" when maxlen would be exceeded (nothing added).
-- Only the jobs that do not exist yet count against maxlen, so a resent call
-- whose first attempt created the jobs is not refused.
-- Hand-off: when a fetcher waits on an idle queue (one is registered in
-- waiting, nothing is ready, nothing is on the wake list), the first new job
-- is leased at once (its first delivery) and pushed on the wake list as
-- "<core><record>": the blocked fetcher gets the job in the reply of its
-- BLPOP, with no further round trip. Should it be gone, the next getjob takes
-- the job (refreshing the lease), or the lease brings it back uncounted.
-- (The hot path of every producer: written without the shared helpers, whose
-- definitions would cost every call.)
local maxlen, delay = tonumber(ARGV[1]), tonumber(ARGV[4])
local jobs = KEYS[5]
if maxlen > 0 then
  local missing = 0
  for i = 6, #ARGV, 3 do missing = missing + 1 - redis.call('HEXISTS', jobs, ARGV[i]) end
  local len = redis.call('LLEN', KEYS[1])
  if missing > 0 and len + missing > maxlen then
    return redis.error_reply('QUEUEFULL queue holds ' .. len .. ' jobs, maxlen is ' .. maxlen)
  end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local head = ' ' .. (now + tonumber(ARGV[3])) .. ' ' .. ARGV[2] .. ' ' .. ARGV[5] .. '\n'
local retry = tonumber(ARGV[2])
local last = redis.call('LINDEX', KEYS[3], -1)  -- the wake list's last entry
local handoff = not last and delay == 0 and retry > 0
  and redis.call('LLEN', KEYS[1]) == 0 and redis.call('ZCOUNT', KEYS[8], now, '+inf') > 0
local created = 0
for i = 6, #ARGV, 3 do
  local core = ARGV[i]
  local record = ARGV[i + 1] .. head .. ARGV[i + 2]
  if redis.call('HSETNX', jobs, core, record) == 1 then
    if delay > 0 then
      redis.call('HSET', KEYS[6], core, 'd 0 0 0 0 0 ' .. delay)
      redis.call('ZADD', KEYS[2], now + delay, core)
    elseif handoff then
      handoff = false
      -- The waiting fetcher is served: its registration goes (a fetcher busy with
      -- this job must not be handed the next one, which could then overtake an
      -- earlier job that comes back to the head of the queue).
      redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. now)
      redis.call('ZPOPMIN', KEYS[8])
      redis.call('HSET', KEYS[6], core, 'a 1 0 0 0 0 0')
      redis.call('ZADD', KEYS[7], now + retry, core)
      last = core .. record
      redis.call('RPUSH', KEYS[3], last)
      redis.call('HINCRBY', KEYS[4], 'out', 1)
    else
      redis.call('RPUSH', KEYS[1], core)
    end
    created = created + 1
  end
end
if created > 0 then
  redis.call('HINCRBY', KEYS[4], 'in', created)
  -- Wake a blocked fetcher unless a token waits already (tokens come last, after
  -- any hand-off); for delayed jobs too: it runs getjob again and learns the
  -- new, nearer due time.
  if not last or (#last > 12 and redis.call('LLEN', KEYS[1]) > 0) then
    redis.call('RPUSH', KEYS[3], 1)
  end
end
return created
