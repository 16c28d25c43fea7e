-- distcl_claim: a DisTcl-protocol server took a request off q:S or p:S.
-- KEYS: 1 r:S:KEY (the run list), 2 the servers' processing set (a zset),
--       3 v:S:KEY (the cached value), 4 w:S:KEY (the waitlist)
-- ARGV: 1 is_get (1 or 0), 2 run-list expiry seconds (twice the lease), 3 the
--       processing member (JSON [service, key]), 4 lease ms
-- Reply: 1 when this server must compute KEY; 0 when it is already in flight;
--   2 when KEY was cached meanwhile: a get was answered from the cache.
-- As DisTcl does: RPUSH is_get onto the run list; only the first entry computes.
-- Beyond DisTcl (invisible to its clients): the run list lives for twice the
-- lease (renewed while computing) instead of 10 s, and the request is recorded
-- in the processing set with a deadline of one lease, so another server takes
-- it over (run list and waiters intact) if this one dies. And a request whose
-- value was cached after its client looked (it was queued behind the
-- computation of the same KEY) is answered from the cache, not computed again.
local count = redis.call('RPUSH', KEYS[1], ARGV[1])
if count > 1 then return 0 end
local cached = redis.call('GET', KEYS[3])
if cached then
  redis.call('DEL', KEYS[1])
  if ARGV[1] == '1' then
    redis.call('RPUSH', KEYS[4], cached)
    redis.call('EXPIRE', KEYS[4], 10)
  end
  return 2
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[4]), ARGV[3])
return 1
