-- close: record the one decision of a waiting task (see redis.go).
-- KEYS: 1 task hash, 2 due, 3 waiting, 4 pending, 5 closed
-- ARGV: 1 shard key prefix "{P:s}:", 2 id, 3 status, 4 closedAt, 5 closedBy,
--       6 closeData, 7 closeKey, 8 enrichPath, 9 closed-index cutoff (closedAt - ClosedTTL)
-- Returns {"notfound"}, {"closed", HGETALL} (closed by another key),
-- {"replay", HGETALL} (closed by this key before) or {"ok", HGETALL}.
local h = KEYS[1]
local id = ARGV[2]
local cur = redis.call('HMGET', h, 's', 'ck', 'u', 'r')
if not cur[1] then
  return {'notfound'}
end
if cur[1] ~= 'WAITING' then
  if ARGV[7] ~= '' and cur[2] == ARGV[7] then
    return {'replay', redis.call('HGETALL', h)}
  end
  return {'closed', redis.call('HGETALL', h)}
end

local args = {'s', ARGV[3], 'ca', ARGV[4]}
local names = {'cb', 'cd', 'ck', 'ep'}
for i = 1, #names do
  local v = ARGV[i + 4]
  if v ~= '' then
    args[#args + 1] = names[i]
    args[#args + 1] = v
  end
end
redis.call('HSET', h, unpack(args))

redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
if cur[3] then
  redis.call('ZREM', ARGV[1] .. 'u:' .. cur[3], id)
end
if cur[4] then
  for role in string.gmatch(cur[4], '[^\031]+') do
    redis.call('ZREM', ARGV[1] .. 'r:' .. role, id)
  end
end
redis.call('ZADD', KEYS[4], ARGV[4], id)
redis.call('ZADD', KEYS[5], ARGV[4], id)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[9])
return {'ok', redis.call('HGETALL', h)}
