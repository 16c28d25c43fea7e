-- distcl_done: a DisTcl-protocol server computed KEY: cache it if it has an
-- expiry, then push it to the waitlist once per get recorded in the run list.
-- KEYS: 1 v:S:KEY, 2 r:S:KEY, 3 w:S:KEY, 4 the processing set
-- ARGV: 1 "STATUS:VALUE", 2 expiry seconds ('' = do not cache), 3 processing member
-- Reply: the number of waiters served.
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local requests = redis.call('LPOP', KEYS[2], 999)
local waiters = 0
if requests then
  for _, entry in ipairs(requests) do waiters = waiters + (tonumber(entry) or 0) end
end
for _ = 1, waiters do
  redis.call('RPUSH', KEYS[3], ARGV[1])
end
if waiters > 0 then redis.call('EXPIRE', KEYS[3], 10) end
redis.call('ZREM', KEYS[4], ARGV[3])
return waiters
