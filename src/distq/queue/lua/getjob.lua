-- getjob: lease up to COUNT jobs from one or more queues, first queue first.
-- KEYS: per queue, the 10 keys of QueueKeys.all()
-- ARGV: 1 count, 2 the fetcher's id, 3 ms it will block on the wake lists if
--       nothing comes (0: it will not): it is registered in the queues'
--       waiting sets until then, so that addjob hands it a job directly.
-- Reply: { next_due_ms (-1 = none), queue_index1, core1, record1, delivery1, nacks1,
--   additional1, … }: next_due_ms is how soon (ms) a delayed job or an expired
--   lease of these queues becomes ready, so a blocked client knows when to
--   look again; each job comes as its queue's index (1-based) and core, its
--   record as stored ("<fmt> … \n<body>"), and its counters.
-- Jobs handed off on a wake list (see addjob) come first: they are the oldest.
-- Also requeues due delayed jobs and expired leases of these queues; an entry
-- of a ready list that is not a core is dead-lettered as a new job holding
-- the raw bytes, with the reason; a job that expired (TTL) is deleted, not
-- delivered.
local count = tonumber(ARGV[1])
local now = now_ms()
local out = {-1}
local nextdue = -1
local fetcher, block = ARGV[2], tonumber(ARGV[3])
local nqueues = #KEYS / 10
for q = 1, nqueues do
  local Q = queue_keys((q - 1) * 10)
  local due = requeue_due(Q, now)
  if due >= 0 and (nextdue < 0 or due < nextdue) then nextdue = due end
  while count > 0 do
    local handed = redis.call('LINDEX', Q.wake, 0)
    if not handed or #handed <= 12 then break end
    local core = string.sub(handed, 1, 12)
    local state = redis.call('HGET', Q.st, core)  -- read before the hand-off is taken
    redis.call('LPOP', Q.wake)
    if state == 'a 1 0 0 0 0 0' then
      local record = string.sub(handed, 13)
      local _, _, retry = record_head(record)
      redis.call('ZADD', Q.leased, now + retry, core)
      out[#out + 1] = q
      out[#out + 1] = core
      out[#out + 1] = record
      out[#out + 1] = 1
      out[#out + 1] = 0
      out[#out + 1] = 0
      count = count - 1
    end
  end
  local taken = 0
  -- Ready jobs by the slice: their entries, records and states in one call
  -- each, their new states and leases in one call each. A slice is read before
  -- it is written, so that a key of the wrong type (another program's doing)
  -- fails the call before the slice's entries are taken off the list.
  while count > 0 do
    local want = math.min(count, 500)
    local cores = redis.call('LRANGE', Q.ready, 0, want - 1)
    if #cores == 0 then break end
    local valid, malformed, seen = {}, {}, {}
    for _, core in ipairs(cores) do
      if #core ~= 12 then
        malformed[#malformed + 1] = core
      elseif not seen[core] then  -- a stale second entry must not lease it twice
        seen[core] = true
        valid[#valid + 1] = core
      end
    end
    local records, states = {}, {}
    if #valid > 0 then
      records = redis.call('HMGET', Q.jobs, unpack(valid))
      states = redis.call('HMGET', Q.st, unpack(valid))
    end
    redis.call('LTRIM', Q.ready, #cores, -1)
    for _, entry in ipairs(malformed) do
      local seq = redis.call('HINCRBY', Q.stats, 'seq', 1)
      local fake = ''
      for _, v in ipairs({now, seq}) do
        local bytes = ''
        for _ = 1, 6 do bytes = string.char(v % 256) .. bytes; v = math.floor(v / 256) end
        fake = fake .. bytes
      end
      redis.call('HSET', Q.jobs, fake, 'b 0 0 0\n' .. entry)
      dead_letter(Q, fake, state_of(Q, fake), 'malformed queue entry: not a job')
    end
    if #valid > 0 then
      local entries, leases = {}, {}
      for i, core in ipairs(valid) do
        local record = records[i]
        if record then
          local t = parse_state(states[i])
          local _, expires, retry = record_head(record)
          if t.s ~= 'q' then
            -- not queued (a stale entry): leave the job where it is
          elseif expires > 0 and expires <= now then
            delete_job(Q, core)
          else
            t.s = 'a'
            t.d = t.d + 1
            entries[#entries + 1] = core
            entries[#entries + 1] = state_entry(t)
            if retry > 0 then
              leases[#leases + 1] = now + retry
              leases[#leases + 1] = core
            end
            out[#out + 1] = q
            out[#out + 1] = core
            out[#out + 1] = record
            out[#out + 1] = t.d
            out[#out + 1] = t.n
            out[#out + 1] = t.a
            count = count - 1
            taken = taken + 1
          end
        end
      end
      if #entries > 0 then redis.call('HSET', Q.st, unpack(entries)) end
      if #leases > 0 then redis.call('ZADD', Q.leased, unpack(leases)) end
    end
    if #cores < want then break end
  end
  if taken > 0 then
    redis.call('HINCRBY', Q.stats, 'out', taken)
    wake(Q)
  end
end
-- The fetcher is registered as waiting until it blocks no more (a new
-- registration replaces its last one).
for q = 1, nqueues do
  local waiting = KEYS[(q - 1) * 10 + 10]
  if #out == 1 and block > 0 then
    redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
    redis.call('ZADD', waiting, now + block, fetcher)
  else
    redis.call('ZREM', waiting, fetcher)
  end
end
out[1] = nextdue
return out
