-- jscan: one step of a scan over the jobs of one queue.
-- KEYS: the 10 keys of QueueKeys.all()
-- ARGV: 1 cursor, 2 count (a hint, as HSCAN's), 3 the state wanted ('' = any)
-- Reply: { next_cursor, core1, core2, … }
local Q = queue_keys(0)
local reply = redis.call('HSCAN', Q.jobs, ARGV[1], 'COUNT', ARGV[2])
local out = {reply[1]}
local entries = reply[2]
for i = 1, #entries, 2 do
  local core = entries[i]
  if ARGV[3] == '' or state_of(Q, core).s == ARGV[3] then out[#out + 1] = core end
end
return out
