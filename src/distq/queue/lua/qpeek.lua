-- qpeek: look at jobs of a list (the ready list or the dead letters) without
-- leasing them. A positive count looks from the oldest, a negative one from
-- the newest (newest first); a count of 0 looks at nothing.
-- KEYS: 1 the list
-- ARGV: 1 count, 2 job-key prefix
-- Reply: { id1, fmt1, body1, delivery1 (d), nacks1, additional1, reason1, … }
local count = tonumber(ARGV[1])
if count == 0 then return {} end
local ids
if count > 0 then
  ids = redis.call('LRANGE', KEYS[1], 0, count - 1)
else
  ids = redis.call('LRANGE', KEYS[1], count, -1)
  local reversed = {}
  for i = #ids, 1, -1 do reversed[#reversed + 1] = ids[i] end
  ids = reversed
end
local out = {}
for _, id in ipairs(ids) do
  local core = core_of(id)
  if core then
    local f = redis.call('HMGET', ARGV[2] .. core, 'm', 'b', 'd', 'n', 'a', 'r')
    if f[1] then
      out[#out + 1] = id
      out[#out + 1] = split_meta(f[1])[1]
      out[#out + 1] = f[2]
      out[#out + 1] = tonumber(f[3] or '0')
      out[#out + 1] = tonumber(f[4] or '0')
      out[#out + 1] = tonumber(f[5] or '0')
      out[#out + 1] = f[6] or ''
    end
  end
end
return out
