-- Helpers shared by every queue script (prepended to each file at load time).
--
-- A job is a hash at KEY = <ns>:{<queue>}:j:<core>, where the job id is
-- "D-<core>-<queue>" and <core> is 24 hex digits (time, sequence, origin).
-- Fields: b body, m meta "<fmt> <ctime_ms> <retry_ms> <ttl_ms> <delay_ms> <maxdel>",
-- s state (q queued, a active, d delayed, i idle, x dead), d deliveries (every
-- fetch, released ones included: strictly increasing, the fencing token),
-- u releases (fetches handed back uncounted), n nacks, a additional deliveries,
-- r dead-letter reason. The deliveries that count are d - u.
-- Every queue key and every job key of one queue share the hash tag {<queue>},
-- so each script touches one cluster slot. Job keys are formed here from the
-- queue's job-key prefix (passed in ARGV) because the ids popped from a list
-- are only known inside the script; they share the queue's slot.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function core_of(id)
  -- "D-" .. 24 hex .. "-" .. queue
  if string.sub(id, 1, 2) ~= 'D-' or string.sub(id, 27, 27) ~= '-' then return nil end
  local core = string.sub(id, 3, 26)
  if not string.match(core, '^%x+$') or #core ~= 24 then return nil end
  return core
end

local function split_meta(m)
  local out = {}
  for part in string.gmatch(m, '%S+') do out[#out + 1] = part end
  return out
end

-- meta fields: 1 fmt, 2 ctime_ms, 3 retry_ms, 4 ttl_ms, 5 delay_ms, 6 maxdel
local function job_meta(jobkey)
  local m = redis.call('HGET', jobkey, 'm')
  if not m then return nil end
  return split_meta(m)
end

local function dead_letter(jobkey, id, dead, stats, reason, now)
  redis.call('HSET', jobkey, 's', 'x', 'r', reason, 'rt', now)
  redis.call('PERSIST', jobkey)
  redis.call('RPUSH', dead, id)
  redis.call('HINCRBY', stats, 'dead', 1)
end

local function wake(ready, wakekey)
  if redis.call('LLEN', ready) > 0 and redis.call('LLEN', wakekey) == 0 then
    redis.call('RPUSH', wakekey, 1)
  end
end

-- The deliveries that count: every fetch (d) less the ones released (u).
local function counted_deliveries(jobkey)
  local f = redis.call('HMGET', jobkey, 'd', 'u')
  return tonumber(f[1] or '0') - tonumber(f[2] or '0')
end

-- Put a job back at the head of its queue after a nack or a lost lease, or
-- dead-letter it when it has been delivered max-deliveries times.
local function bounce(jobkey, id, ready, dead, stats, counter, why, now)
  redis.call('HINCRBY', jobkey, counter, 1)
  local meta = job_meta(jobkey)
  local maxdel = tonumber(meta[6])
  local delivered = counted_deliveries(jobkey)
  if maxdel > 0 and delivered >= maxdel then
    dead_letter(jobkey, id, dead, stats,
      why .. ' after ' .. delivered .. ' deliveries (max_deliveries=' .. maxdel .. ')', now)
    return 'x'
  end
  redis.call('HSET', jobkey, 's', 'q')
  redis.call('LPUSH', ready, id)
  return 'q'
end

-- Move due delayed jobs and expired leases back into the ready list.
-- Returns the earliest future due time (ms) among both sets, or -1.
local function requeue_due(ready, leased, delayed, dead, stats, prefix, now)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed, id)
    local core = core_of(id)
    if core and redis.call('EXISTS', prefix .. core) == 1 then
      redis.call('HSET', prefix .. core, 's', 'q')
      redis.call('RPUSH', ready, id)
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, 1000)
  -- Each goes back to the head of the queue: walk them last first, so that
  -- they keep their order (the first leased ends up first).
  for i = #expired, 1, -1 do
    local id = expired[i]
    redis.call('ZREM', leased, id)
    local core = core_of(id)
    if core and redis.call('EXISTS', prefix .. core) == 1 then
      bounce(prefix .. core, id, ready, dead, stats, 'a', 'lease expired', now)
    end
  end
  local nextdue = -1
  for _, key in ipairs({delayed, leased}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] then
      local at = tonumber(first[2])
      if nextdue < 0 or at < nextdue then nextdue = at end
    end
  end
  if nextdue >= 0 then nextdue = nextdue - now end
  return nextdue
end
