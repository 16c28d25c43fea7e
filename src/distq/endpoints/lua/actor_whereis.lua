-- actor_whereis: the actor a name points to, if its node is alive.
-- KEYS: 1 names hash, 2 nodes zset
-- ARGV: 1 name
-- Reply: "<node> <actor id>", or nil (a name of a dead node is released here).
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local node = string.match(current, '^(%S+) ')
local beat = redis.call('ZSCORE', KEYS[2], node)
if beat and tonumber(beat) >= now_ms() then return current end
redis.call('HDEL', KEYS[1], ARGV[1])
return false
