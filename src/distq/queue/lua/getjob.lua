-- getjob: lease up to COUNT jobs from one or more queues, first queue first.
-- KEYS: per queue, 6 keys: ready, leased, delayed, dead, wake, stats
-- ARGV: 1 count, then per queue: job-key prefix
-- Reply: { next_due_ms (-1 = none), id1, fmt1, body1, delivery1, nacks1, additional1, id2, … }
--   next_due_ms is how soon (ms) a delayed job or an expired lease of these
--   queues becomes ready, so a blocked client knows when to look again.
-- Also requeues due delayed jobs and expired leases of these queues; an entry
-- of a ready list that is not a job id is dead-lettered as a new job holding
-- the raw bytes, with the reason; an id whose job expired (TTL) is skipped.
local count = tonumber(ARGV[1])
local now = now_ms()
local out = {-1}
local nextdue = -1
local nqueues = #KEYS / 6
for q = 1, nqueues do
  local k = (q - 1) * 6
  local ready, leased, delayed, dead, wakekey, stats =
    KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local prefix = ARGV[1 + q]
  local due = requeue_due(ready, leased, delayed, dead, stats, prefix, now)
  if due >= 0 and (nextdue < 0 or due < nextdue) then nextdue = due end
  local taken = 0
  while count > 0 do
    local id = redis.call('LPOP', ready)
    if not id then break end
    local core = core_of(id)
    if not core then
      local seq = redis.call('HINCRBY', stats, 'seq', 1)
      local fake = string.format('%012x%012x', now, seq)
      local queue = string.sub(prefix, string.find(prefix, '{', 1, true) + 1, -5)
      local jobkey = prefix .. fake
      redis.call('HSET', jobkey, 'b', id, 'm', 'b ' .. now .. ' 0 0 0 0')
      dead_letter(jobkey, 'D-' .. fake .. '-' .. queue, dead, stats,
        'malformed queue entry: not a job id', now)
    else
      local jobkey = prefix .. core
      local f = redis.call('HMGET', jobkey, 'm', 'b', 'n', 'a', 's')
      if f[1] and f[5] == 'q' then
        local meta = split_meta(f[1])
        local delivery = redis.call('HINCRBY', jobkey, 'd', 1)
        redis.call('HSET', jobkey, 's', 'a')
        local retry = tonumber(meta[3])
        if retry > 0 then redis.call('ZADD', leased, now + retry, id) end
        out[#out + 1] = id
        out[#out + 1] = meta[1]
        out[#out + 1] = f[2]
        out[#out + 1] = delivery
        out[#out + 1] = tonumber(f[3] or '0')
        out[#out + 1] = tonumber(f[4] or '0')
        count = count - 1
        taken = taken + 1
      end
    end
  end
  if taken > 0 then
    redis.call('HINCRBY', stats, 'out', taken)
    wake(ready, wakekey)
  end
end
out[1] = nextdue
return out
