-- distcl_reap: take over DisTcl requests whose server stopped renewing them
-- (it died mid-computation); the caller computes them as if it had claimed them.
-- KEYS: 1 the processing set
-- ARGV: 1 lease ms
-- Reply: the members taken over (JSON [service, key], as stored by the claim);
--   the caller renews their run lists while it computes them.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 10)
for _, member in ipairs(expired) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), member)
end
return expired
