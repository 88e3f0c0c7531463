-- early_unpark: remove applied or expired early answers of one shard (see
-- redis_early.go); one already gone is skipped, so a retry is harmless.
-- KEYS: 1 the shard's expiry index, 2 the shard's count of early answers
-- ARGV: 1 shard key prefix "{P:s}:", then pairs of id, key
local n = 0
for i = 2, #ARGV, 2 do
  local id, key = ARGV[i], ARGV[i + 1]
  if redis.call('HDEL', ARGV[1] .. 'ea:' .. id, key) == 1 then
    n = n + 1
  end
  -- The index entry goes even when the value went before (by hand).
  redis.call('ZREM', KEYS[1], id .. '\031' .. key)
end
if n > 0 then
  local left = redis.call('DECRBY', KEYS[2], n)
  if left <= 0 then
    redis.call('DEL', KEYS[2])
  end
end
return n
