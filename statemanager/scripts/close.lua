-- close: record the one decision of waiting tasks of one shard, atomically per
-- id. Close sends one id; the timers send a shard's due deadlines together, so
-- Lua's per-call cost is paid once per batch (see redis.go).
-- KEYS: 1 due, 2 pending, 3.. the task hashes of the ids
-- ARGV: 1 shard key prefix "{P:s}:", 2 status, 3 closedAt, 4 closedBy,
--       5 closeData, 6 closeKey, 7 enrichPath, 8 closed-index cutoff,
--       9 ClosedTTL in ms, 10.. ids
-- Returns one reply per id, in order: {"notfound"}, {"closed", HGETALL},
-- {"replay", HGETALL} or {"ok", fields}.
local function tenantPrefix(p, tn)
  if tn == nil or tn == '' then
    return p
  end
  return p .. 'n' .. #tn .. ':' .. tn .. ':'
end

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
-- The closed indexes written, each trimmed once after the batch; the
-- per-closer ones also expire when idle, since people come and go.
local trim, closers, seen = {}, {}, {}
local closedNow = 0
for n = 10, #ARGV do
  local id = ARGV[n]
  local h = KEYS[n - 7]
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
      local tp = tenantPrefix(ARGV[1], f['tn'])
      redis.call('HSET', h, unpack(decision))
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', tp .. 'waiting', id)
      if f['u'] then
        redis.call('ZREM', tp .. 'u:' .. f['u'], id)
      end
      if f['r'] then
        for role in string.gmatch(f['r'], '[^\031]+') do
          redis.call('ZREM', tp .. 'r:' .. role, id)
        end
      end
      redis.call('ZADD', KEYS[2], ARGV[3], id)
      local ck = tp .. 'closed:' .. ARGV[2]
      redis.call('ZADD', ck, ARGV[3], id)
      if not seen[ck] then
        seen[ck] = true
        trim[#trim + 1] = ck
      end
      if ARGV[4] ~= '' then
        local cb = tp .. 'cb:' .. ARGV[2] .. ':' .. ARGV[4]
        redis.call('ZADD', cb, ARGV[3], id)
        if not seen[cb] then
          seen[cb] = true
          trim[#trim + 1] = cb
          closers[#closers + 1] = cb
        end
      end
      for i = 1, #decision do
        cur[#cur + 1] = decision[i]
      end
      replies[#replies + 1] = {'ok', cur}
      closedNow = closedNow + 1
    end
  end
end
if closedNow > 0 then
  redis.call('DECRBY', ARGV[1] .. 'nwaiting', closedNow)
end
for i = 1, #trim do
  redis.call('ZREMRANGEBYSCORE', trim[i], '-inf', '(' .. ARGV[8])
end
for i = 1, #closers do
  redis.call('PEXPIRE', closers[i], ARGV[9])
end
return replies
