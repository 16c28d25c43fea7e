-- actor_register: give a name to an actor, unique cluster-wide.
-- KEYS: 1 names hash, 2 nodes zset
-- ARGV: 1 name, 2 node, 3 actor id
-- Reply: 1. Errors: "NAMETAKEN …" when a live node's actor holds the name.
-- A name held by a dead node's actor is free (released lazily, here).
-- A named actor's id is the same on every node ("n.<name>"): the holder is
-- the node and the actor, so another node's claim is refused while it lives.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local node, actor = string.match(current, '^(%S+) (%S+)$')
  if node ~= ARGV[2] or actor ~= ARGV[3] then
    local beat = redis.call('ZSCORE', KEYS[2], node)
    if beat and tonumber(beat) >= now_ms() then
      return redis.error_reply('NAMETAKEN ' .. ARGV[1] .. ' is held by ' .. actor .. ' on ' .. node)
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
