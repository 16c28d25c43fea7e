-- distcl_reap: take over DisTcl requests whose server stopped renewing them
-- (it died mid-computation); the caller computes them as if it had claimed them.
-- KEYS: 1 the processing set
-- ARGV: 1 lease ms, then the services the caller serves
-- Reply: the members taken over (JSON [service, key], as stored by the claim);
--   the caller renews their run lists while it computes them. Requests of
--   services the caller does not serve are left for a server that does.
local now = now_ms()
local serves = {}
for i = 2, #ARGV do serves[ARGV[i]] = true end
local taken = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(expired) do
  local ok, decoded = pcall(cjson.decode, member)
  if ok and type(decoded) == 'table' and serves[decoded[1]] and #taken < 10 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), member)
    taken[#taken + 1] = member
  end
end
return taken
