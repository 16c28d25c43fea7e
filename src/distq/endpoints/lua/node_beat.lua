-- node_beat: a node is alive: record until when (server time) and refresh its hash.
-- KEYS: 1 nodes zset (node id → the time it counts as dead unless it beats again)
--       2 the node's hash
-- ARGV: 1 node id, 2 ms it stays alive without beating, then field, value pairs
-- Reply: the server time in ms.
local now = now_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if #ARGV > 2 then redis.call('HSET', KEYS[2], unpack(ARGV, 3)) end
redis.call('HSET', KEYS[2], 'beat', now)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return now
