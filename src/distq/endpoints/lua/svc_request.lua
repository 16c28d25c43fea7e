-- svc_request: a client asks for a service's result (native protocol).
-- KEYS: 1 value, 2 in-flight marker, 3 waitlist (one request key of one service)
-- ARGV: 1 lease ms (how long the marker lives unless the computation renews it)
-- Reply: {1, value} when cached; {2} when a computation is in flight (wait
--   for it); {3} when the caller must queue the request: the marker is now
--   set, and the waitlist of an earlier, uncached result is cleared so that a
--   new computation is what the waiters read.
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('DEL', KEYS[3])
return {3}
