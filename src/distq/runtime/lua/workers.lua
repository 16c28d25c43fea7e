-- workers: every live worker with its hash, at server time; prunes the dead.
-- A worker is live while its hash exists (each beat renews its expiry); an id
-- of the zset whose hash has expired is removed from the zset here. The hash
-- keys are formed from the prefix in ARGV (the ids are only known in here).
-- KEYS: 1 workers zset
-- ARGV: 1 worker-hash key prefix ("<ns>:w:")
-- Reply: { now_ms, id1, last_beat_ms1, {field, value, …}, id2, … }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {now}
local gone = {}
for i = 1, #entries, 2 do
  local id = entries[i]
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields == 0 then
    gone[#gone + 1] = id
  else
    out[#out + 1] = id
    out[#out + 1] = entries[i + 1]
    out[#out + 1] = fields
  end
end
for i = 1, #gone, 500 do
  redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + 499, #gone)))
end
return out
