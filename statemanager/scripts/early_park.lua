-- early_park: keep an operation for a task that has not started (see
-- redis_early.go), unless the task exists, the operation is parked already
-- or a limit is reached. Everything is in the task's slot, so a start
-- racing the park either sees the operation or makes the park refuse.
-- KEYS: 1 task hash, 2 the id's early answers (hash key -> value),
--       3 the shard's expiry index (zset expiresAt -> id \31 key),
--       4 the shard's count of early answers, 5 the shard's arrival counter
-- ARGV: 1 id, 2 key (request id), 3 expiresAt, 4 value, 5 per-task limit,
--       6 per-shard limit
-- Returns {"exists"}, {"replay"}, {"fulltask"}, {"fullshard"} or
-- {"parked", seq}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return {'replay'}
end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then
  return {'fulltask'}
end
if (tonumber(redis.call('GET', KEYS[4])) or 0) >= tonumber(ARGV[6]) then
  return {'fullshard'}
end
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[2], ARGV[2], seq .. ':' .. ARGV[3] .. ':' .. ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1] .. '\031' .. ARGV[2])
redis.call('INCR', KEYS[4])
return {'parked', seq}
