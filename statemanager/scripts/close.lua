-- close: record the one decision of a waiting task (see redis.go).
-- KEYS: 1 task hash, 2 due, 3 waiting, 4 pending, 5 closed
-- ARGV: 1 shard key prefix "{P:s}:", 2 id, 3 status, 4 closedAt, 5 closedBy,
--       6 closeData, 7 closeKey, 8 enrichPath, 9 closed-index cutoff (closedAt - ClosedTTL)
-- Returns {"notfound"}, {"closed", HGETALL} (closed by another key),
-- {"replay", HGETALL} (closed by this key before) or {"ok", fields}.
local h = KEYS[1]
local id = ARGV[2]
-- One read serves the checks and the reply; the hash is never read twice.
local cur = redis.call('HGETALL', h)
if #cur == 0 then
  return {'notfound'}
end
local f = {}
for i = 1, #cur, 2 do
  f[cur[i]] = cur[i + 1]
end
if f['s'] ~= 'WAITING' then
  if ARGV[7] ~= '' and f['ck'] == ARGV[7] then
    return {'replay', cur}
  end
  return {'closed', cur}
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
if f['u'] then
  redis.call('ZREM', ARGV[1] .. 'u:' .. f['u'], id)
end
if f['r'] then
  for role in string.gmatch(f['r'], '[^\031]+') do
    redis.call('ZREM', ARGV[1] .. 'r:' .. role, id)
  end
end
redis.call('ZADD', KEYS[4], ARGV[4], id)
redis.call('ZADD', KEYS[5], ARGV[4], id)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[9])
-- The reply is the hash as read followed by the decision just written: a
-- waiting hash holds no decision fields, and a field given twice ('s')
-- takes its last value when decoded, so this equals a fresh HGETALL.
for i = 1, #args do
  cur[#cur + 1] = args[i]
end
return {'ok', cur}
