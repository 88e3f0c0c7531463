-- close: record the one decision of waiting tasks of one shard, atomically per
-- id. Close sends one id; the timers send a shard's due deadlines together, so
-- Lua's per-call cost is paid once per batch (see redis.go).
-- KEYS: 1 due, 2 waiting, 3 pending, 4 closed, 5.. the task hashes of the ids
-- ARGV: 1 shard key prefix "{P:s}:", 2 status, 3 closedAt, 4 closedBy,
--       5 closeData, 6 closeKey, 7 enrichPath, 8 closed-index cutoff, 9.. ids
-- Returns one reply per id, in order: {"notfound"}, {"closed", HGETALL},
-- {"replay", HGETALL} or {"ok", fields}.
local decision = {'s', ARGV[2], 'ca', ARGV[3]}
local names = {'cb', 'cd', 'ck', 'ep'}
for i = 1, #names do
  local v = ARGV[i + 3]
  if v ~= '' then
    decision[#decision + 1] = names[i]
    decision[#decision + 1] = v
  end
end

local replies = {}
local closedAny = false
for n = 9, #ARGV do
  local id = ARGV[n]
  local h = KEYS[n - 4]
  local cur = redis.call('HGETALL', h)
  if #cur == 0 then
    replies[#replies + 1] = {'notfound'}
  else
    local f = {}
    for i = 1, #cur, 2 do
      f[cur[i]] = cur[i + 1]
    end
    if f['s'] ~= 'WAITING' then
      if ARGV[6] ~= '' and f['ck'] == ARGV[6] then
        replies[#replies + 1] = {'replay', cur}
      else
        replies[#replies + 1] = {'closed', cur}
      end
    else
      redis.call('HSET', h, unpack(decision))
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
      if f['u'] then
        redis.call('ZREM', ARGV[1] .. 'u:' .. f['u'], id)
      end
      if f['r'] then
        for role in string.gmatch(f['r'], '[^\031]+') do
          redis.call('ZREM', ARGV[1] .. 'r:' .. role, id)
        end
      end
      redis.call('ZADD', KEYS[3], ARGV[3], id)
      redis.call('ZADD', KEYS[4], ARGV[3], id)
      closedAny = true
      for i = 1, #decision do
        cur[#cur + 1] = decision[i]
      end
      replies[#replies + 1] = {'ok', cur}
    end
  end
end
if closedAny then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[8])
end
return replies
