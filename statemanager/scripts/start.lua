-- start: store a task as WAITING unless it already exists (see redis.go).
-- KEYS: 1 task hash, 2 due, 3 waiting, 4 pending, 5 closed
-- ARGV: 1 shard key prefix "{P:s}:", 2 id, 3 name, 4 spec, 5 action,
--       6 roles (joined by \31), 7 user, 8 saga, 9 stepId, 10 requestId,
--       11 startedAt, 12 deadline, 13 data, 14 envelope, 15 start key
-- Returns {"created"}, {"exists", HGETALL} or {"pending"}.
local h = KEYS[1]
local id = ARGV[2]
-- One read serves both the decision and the "exists" reply.
local cur = redis.call('HGETALL', h)
if #cur > 0 then
  local f = {}
  for i = 1, #cur, 2 do
    f[cur[i]] = cur[i + 1]
  end
  if f['s'] == 'WAITING' then
    return {'exists', cur}
  end
  -- A replay of the step visit that started the closed task is a no-op;
  -- another visit (a saga looping back into the step) starts afresh.
  if ARGV[15] ~= '' then
    if f['sk'] == ARGV[15] then
      return {'exists', cur}
    end
  elseif ARGV[10] ~= '' and f['rq'] == ARGV[10] and f['st'] == ARGV[9] then
    return {'exists', cur}
  end
  if redis.call('ZSCORE', KEYS[4], id) then
    return {'pending'}
  end
  redis.call('DEL', h)
  redis.call('ZREM', KEYS[5], id)
end

local names = {'n', 'sp', 'a', 'r', 'u', 'sg', 'st', 'rq', 's0', 'dl', 'd', 'e', 'sk'}
local args = {'id', id, 's', 'WAITING'}
for i = 1, #names do
  local v = ARGV[i + 2]
  if v ~= '' and not (names[i] == 'dl' and v == '0') then
    args[#args + 1] = names[i]
    args[#args + 1] = v
  end
end
redis.call('HSET', h, unpack(args))

local startedAt = ARGV[11]
if tonumber(ARGV[12]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[12], id)
end
redis.call('ZADD', KEYS[3], startedAt, id)
if ARGV[7] ~= '' then
  redis.call('ZADD', ARGV[1] .. 'u:' .. ARGV[7], startedAt, id)
end
for role in string.gmatch(ARGV[6], '[^\031]+') do
  redis.call('ZADD', ARGV[1] .. 'r:' .. role, startedAt, id)
end
return {'created'}
