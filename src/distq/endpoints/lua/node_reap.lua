-- node_reap: clean up after nodes that stopped beating (they died): release
-- the names of their actors and hand back who watched those actors, so the
-- caller can tell them. Each dead node is reaped once (by whoever ZREMs it).
-- KEYS: 1 nodes zset, 2 names hash
-- ARGV: 1 the namespace
-- Reply: { {node, actor, watcher1, watcher2, …}, … } for every actor of the
--   dead nodes ("<node> <actor> <kind>" per watcher).
-- Node, actor-set and watcher keys are formed here from the namespace: this
-- layout expects one server (with replicas), as the rest of presence does.
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, 10)
local out = {}
for _, node in ipairs(dead) do
  if redis.call('ZREM', KEYS[1], node) == 1 then
    local names = redis.call('HGETALL', KEYS[2])
    for i = 1, #names, 2 do
      if string.match(names[i + 1], '^(%S+) ') == node then redis.call('HDEL', KEYS[2], names[i]) end
    end
    local setkey = ARGV[1] .. ':node:' .. node .. ':actors'
    for _, actor in ipairs(redis.call('SMEMBERS', setkey)) do
      local monkey = ARGV[1] .. ':mon:' .. actor
      local entry = {node, actor}
      for _, watcher in ipairs(redis.call('SMEMBERS', monkey)) do entry[#entry + 1] = watcher end
      redis.call('DEL', monkey)
      out[#out + 1] = entry
    end
    redis.call('DEL', setkey, ARGV[1] .. ':node:' .. node)
  end
end
return out
