-- early_expired: the early answers of one shard past their expiry, earliest
-- first, with their values; they stay until early_unpark removes them (see
-- redis_early.go). An index entry whose value is gone (removed by hand) is
-- dropped here, so it is not read again.
-- KEYS: 1 the shard's expiry index, 2 the shard's count of early answers
-- ARGV: 1 shard key prefix "{P:s}:", 2 now (epoch ms), 3 limit
-- Returns a flat array of member, value pairs.
local out = {}
local gone = 0
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(members) do
  local sep = string.find(m, '\031', 1, true)
  local v = false
  if sep then
    v = redis.call('HGET', ARGV[1] .. 'ea:' .. string.sub(m, 1, sep - 1), string.sub(m, sep + 1))
  end
  if v then
    out[#out + 1] = m
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], m)
    gone = gone + 1
  end
end
if gone > 0 then
  redis.call('DECRBY', KEYS[2], gone)
end
return out
