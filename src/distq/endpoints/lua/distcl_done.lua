-- distcl_done: a DisTcl-protocol server computed KEY: cache it if it has an
-- expiry, then push it to the waitlist once per get recorded in the run list.
-- KEYS: 1 v:S:KEY, 2 r:S:KEY, 3 w:S:KEY, 4 the processing set, 5 q:S, 6 p:S
-- ARGV: 1 "STATUS:VALUE", 2 expiry seconds ('' = do not cache), 3 processing
--       member, 4 KEY
-- Reply: the number of waiters served.
-- Beyond DisTcl (invisible to its clients): requests for the same KEY still
-- queued on q:S and p:S arrived while it was computed and no server took them
-- (a single server computes one request at a time); they are removed, and each
-- get among them is served this result, as if recorded on the run list.
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local requests = redis.call('LPOP', KEYS[2], 999)
local waiters = 0
if requests then
  for _, entry in ipairs(requests) do waiters = waiters + (tonumber(entry) or 0) end
end
waiters = waiters + redis.call('LREM', KEYS[5], 0, ARGV[4])
redis.call('LREM', KEYS[6], 0, ARGV[4])
for _ = 1, waiters do
  redis.call('RPUSH', KEYS[3], ARGV[1])
end
if waiters > 0 then redis.call('EXPIRE', KEYS[3], 10) end
redis.call('ZREM', KEYS[4], ARGV[3])
return waiters
