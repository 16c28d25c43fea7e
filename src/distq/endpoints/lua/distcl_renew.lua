-- distcl_renew: a DisTcl-protocol server is still computing a request: push
-- its deadline in the processing set one lease ahead.
-- KEYS: 1 the processing set
-- ARGV: 1 lease ms, 2 the processing member
-- Reply: 1 if the member was there (0: another server took it over).
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms() + tonumber(ARGV[1]), ARGV[2])
