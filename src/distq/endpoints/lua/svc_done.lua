-- svc_done: a server computed a service's result (native protocol).
-- KEYS: 1 value, 2 in-flight marker, 3 waitlist
-- ARGV: 1 stored result, 2 cache ttl ms (0: deliver to the waiters, keep none),
--       3 waitlist ttl ms (how long late waiters can still read it)
-- Reply: 1.
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('DEL', KEYS[3])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[2])
return 1
