-- Helpers shared by the queue scripts (prepended to the scripts that call them).
--
-- A job is known inside its queue by its core: the 12 bytes written as 24 hex
-- digits in its id "D-<core>-<queue>" (6 bytes of milliseconds, 2 of sequence,
-- 4 of origin). The lists and sorted sets of a queue hold cores, and three
-- hashes of the queue, keyed by core, hold the jobs:
--   jobs  "<fmt> <expires_ms> <retry_ms> <maxdel>\n<body>", written once
--   st    "<state> <d> <u> <n> <a> <f> <delay_ms>", absent while a job is
--         queued and was never fetched (the common case costs no entry)
--   why   the dead-letter reason, or the last error of a task that is retried
-- state: q queued, a active, d delayed, i idle, x dead. d: deliveries (every
-- fetch, released ones included: strictly increasing, the fencing token);
-- u: releases (fetches handed back uncounted); n: nacks; a: additional
-- deliveries (leases that expired); f: failed attempts. The deliveries that
-- count are d - u.
-- A job expires at expires_ms (server time), whatever its state but dead: a
-- script that meets an expired job deletes it.
-- A job handed off (see addjob) waits on the wake list as "<core><record>",
-- active in its first delivery, until a fetcher takes it.
-- Every key of a queue shares the hash tag {<queue>}: each script touches one
-- cluster slot.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The queue's keys, from KEYS[offset + 1 .. offset + 10] (QueueKeys.all()).
local function queue_keys(offset)
  return {ready = KEYS[offset + 1], leased = KEYS[offset + 2], delayed = KEYS[offset + 3],
    dead = KEYS[offset + 4], wake = KEYS[offset + 5], stats = KEYS[offset + 6],
    jobs = KEYS[offset + 7], st = KEYS[offset + 8], why = KEYS[offset + 9],
    waiting = KEYS[offset + 10]}
end

-- The head of a job record: fmt, expires_ms, retry_ms, maxdel.
local function record_head(record)
  local nl = string.find(record, '\n', 1, true)
  local fmt, expires, retry, maxdel =
    string.match(string.sub(record, 1, nl - 1), '^(%S+) (%d+) (%d+) (%d+)$')
  return fmt, tonumber(expires), tonumber(retry), tonumber(maxdel)
end

-- A state entry as a table with s, d, u, n, a, f, delay (no entry: queued,
-- never fetched).
local function parse_state(v)
  if not v then return {s = 'q', d = 0, u = 0, n = 0, a = 0, f = 0, delay = 0} end
  local s, d, u, n, a, f, delay =
    string.match(v, '^(%a) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  return {s = s, d = tonumber(d), u = tonumber(u), n = tonumber(n), a = tonumber(a),
    f = tonumber(f), delay = tonumber(delay)}
end

-- The state of a job that exists.
local function state_of(Q, core)
  return parse_state(redis.call('HGET', Q.st, core))
end

-- A state table as its entry.
local function state_entry(t)
  return t.s .. ' ' .. t.d .. ' ' .. t.u .. ' ' .. t.n .. ' ' .. t.a .. ' ' .. t.f .. ' ' .. t.delay
end

local function save_state(Q, core, t)
  redis.call('HSET', Q.st, core, state_entry(t))
end

local function delete_job(Q, core)
  redis.call('HDEL', Q.jobs, core)
  redis.call('HDEL', Q.st, core)
  redis.call('HDEL', Q.why, core)
end

-- Take a job off the wake list if it was handed off there and nobody took it
-- yet; whether it was there. Scripts that end a job's first delivery call it
-- (ack, nack, release, dead-letter, enqueue, delete), so no fetcher is handed
-- a job that is no longer active.
local function unhand(Q, core, t)
  if t.s ~= 'a' or t.d ~= 1 or redis.call('LLEN', Q.wake) == 0 then return false end
  local record = redis.call('HGET', Q.jobs, core)
  return record ~= false and redis.call('LREM', Q.wake, 1, core .. record) == 1
end

-- The job's state when its token (a delivery number; '' = unfenced) matches.
local function fenced_state(Q, core, token)
  if redis.call('HEXISTS', Q.jobs, core) == 0 then return nil, false end
  local t = state_of(Q, core)
  return t, token == '' or tostring(t.d) == token
end

local function dead_letter(Q, core, t, reason)
  t.s = 'x'
  save_state(Q, core, t)
  redis.call('HSET', Q.why, core, reason)
  redis.call('RPUSH', Q.dead, core)
  redis.call('HINCRBY', Q.stats, 'dead', 1)
end

-- Push a wake token when jobs are ready and no token waits (tokens come last,
-- after any job handed off).
local function wake(Q)
  if redis.call('LLEN', Q.ready) > 0 then
    local last = redis.call('LINDEX', Q.wake, -1)
    if not last or #last > 12 then redis.call('RPUSH', Q.wake, 1) end
  end
end

-- The creation time (ms) written in a core's first 6 bytes.
local function core_ms(core)
  local ms = 0
  for i = 1, 6 do ms = ms * 256 + string.byte(core, i) end
  return ms
end

-- Put a job back at the head of its queue after a nack or a lost lease, or
-- dead-letter it when it has been delivered max-deliveries times.
local function bounce(Q, core, t, counter, why)
  t[counter] = t[counter] + 1
  local _, _, _, maxdel = record_head(redis.call('HGET', Q.jobs, core))
  local delivered = t.d - t.u
  if maxdel > 0 and delivered >= maxdel then
    dead_letter(Q, core, t,
      why .. ' after ' .. delivered .. ' deliveries (max_deliveries=' .. maxdel .. ')')
    return 'x'
  end
  t.s = 'q'
  save_state(Q, core, t)
  redis.call('LPUSH', Q.ready, core)
  return 'q'
end

-- Whether a job's record says it has expired (it is deleted then).
local function expired(Q, core, now)
  local record = redis.call('HGET', Q.jobs, core)
  if not record then return true end
  local _, expires = record_head(record)
  if expires > 0 and expires <= now then
    delete_job(Q, core)
    return true
  end
  return false
end

-- Due delayed jobs back into the ready list.
local function requeue_delayed(Q, now)
  local due = redis.call('ZRANGEBYSCORE', Q.delayed, '-inf', now, 'LIMIT', 0, 1000)
  for _, core in ipairs(due) do
    redis.call('ZREM', Q.delayed, core)
    if not expired(Q, core, now) then
      local t = state_of(Q, core)
      t.s = 'q'
      save_state(Q, core, t)
      redis.call('RPUSH', Q.ready, core)
    end
  end
end

-- Jobs whose lease expired back to the head of the ready list.
local function requeue_lost(Q, now)
  local lost = redis.call('ZRANGEBYSCORE', Q.leased, '-inf', now, 'LIMIT', 0, 1000)
  -- Each goes back to the head of the queue: walk them last first, so that
  -- they keep their order (the first leased ends up first).
  for i = #lost, 1, -1 do
    local core = lost[i]
    redis.call('ZREM', Q.leased, core)
    if not expired(Q, core, now) then
      local t = state_of(Q, core)
      if unhand(Q, core, t) then
        -- handed off, never taken: back as if never delivered
        t.u = t.u + 1
        t.s = 'q'
        save_state(Q, core, t)
        redis.call('LPUSH', Q.ready, core)
      else
        bounce(Q, core, t, 'a', 'lease expired')
      end
    end
  end
end

-- The lowest score of a sorted set (nil when it is empty).
local function first_score(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2])
end

-- Move due delayed jobs and expired leases back into the ready list.
-- Returns the earliest future due time (ms) among both sets, or -1.
-- (Most calls find nothing due: one look at each set's first entry.)
local function requeue_due(Q, now)
  local delayed_at, leased_at = first_score(Q.delayed), first_score(Q.leased)
  if delayed_at and delayed_at <= now then
    requeue_delayed(Q, now)
    delayed_at = first_score(Q.delayed)
  end
  if leased_at and leased_at <= now then
    requeue_lost(Q, now)
    leased_at = first_score(Q.leased)
  end
  local nextdue = math.min(delayed_at or math.huge, leased_at or math.huge)
  if nextdue == math.huge then return -1 end
  return nextdue - now
end
