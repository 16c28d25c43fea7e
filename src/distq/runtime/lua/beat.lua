-- beat: one worker heartbeat, and its pending control messages, in one call.
-- Records the heartbeat at server time (the zset score, in ms, and the hash's
-- `beat` field, in epoch seconds), writes the given hash fields, renews the
-- hash's expiry, drops ids of the worker zset that have not beaten for
-- `stale` ms, and pops up to `count` messages of the control queue.
-- KEYS: 1 workers zset, 2 the worker's hash, 3 the worker's control queue
-- ARGV: 1 worker id, 2 hash expiry (ms), 3 count, 4 stale (ms),
--   5.. field1, value1, … (written to the hash)
-- Reply: { now_ms, message1, message2, … } (oldest message first)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now - tonumber(ARGV[4])))
local fields = {'beat', string.format('%d.%03d', math.floor(now / 1000), now % 1000)}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local out = {now}
local messages = redis.call('LPOP', KEYS[3], ARGV[3])
if messages then
  for _, message in ipairs(messages) do out[#out + 1] = message end
end
return out
