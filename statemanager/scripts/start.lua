-- start: store tasks as WAITING unless their id is taken (see redis.go),
-- each exactly as if it were alone: concurrent starts of one shard share one
-- call (the pipeliner merges them), so Lua's per-call cost is paid once per
-- batch; a lone start is a batch of one. The helpers are lib.lua's,
-- prepended at load time.
-- Per task, KEYS and ARGV hold one item each, in order (item i's keys start
-- at KEYS[6 * (i - 1) + 1], its args at ARGV[23 * (i - 1) + 1]):
-- KEYS: 1 task hash, 2 due, 3 pending, 4 history, 5 applied change keys,
--       6 the early answers waiting for the id (redis_early.go)
-- ARGV: 1 shard key prefix "{P:s}:", 2 id, 3 name, 4 spec, 5 action,
--       6 roles (joined by \31), 7 user, 8 saga, 9 stepId, 10 requestId,
--       11 startedAt, 12 deadline, 13 data, 14 envelope, 15 start key,
--       16 tenant, 17 possible outcomes (joined by \31),
--       18 required approvals, 19 approver roles (joined by \31), 20 priority,
--       21 started by, 22 and 23 its deadline and priority sort members
--       (redis.go's sortKey, lib.lua's deadlineMember and priorityMember)
-- Returns one reply per item, in order: {"created", {}, early},
-- {"exists", HGETALL, early}, {"pending"}, or {"error", message} when the
-- item failed (itemReply: the other items still run); early is 1 when
-- operations wait for the id (one EXISTS in the task's slot, so a start
-- learns it in this same call).
local keysPer, argsPer = 6, 23

-- The hash fields of ARGV 3.., in order; zeroes are left out when 0.
local names = {'n', 'sp', 'a', 'r', 'u', 'sg', 'st', 'rq', 's0', 'dl', 'd', 'e', 'sk', 'tn', 'po', 'ra', 'ar', 'pr', 'sb', 'dm', 'pm'}
local nnames = #names
-- zero[i]: names[i] is left out when '0' too.
local zero = {}
for i = 1, nnames do
  local n = names[i]
  zero[i] = n == 'dl' or n == 'ra' or n == 'pr'
end

-- enter puts a new WAITING task in one listing family (familiesOf in
-- lib.lua) under tenant prefix tp, in its three orders (see reindex).
local function enter(tp, fam, id, s0, dm, pm)
  redis.call('ZADD', tp .. fam, s0, id)
  redis.call('ZADD', tp .. 'd:' .. fam, 0, dm)
  if pm ~= '' then
    redis.call('ZADD', tp .. 'p:' .. fam, 0, pm)
  end
end

-- startOne starts the item whose keys follow KEYS[k] and args ARGV[a].
local function startOne(k, a)
  local h = KEYS[k + 1]
  local id = ARGV[a + 2]
  -- One read serves both the decision and the "exists" reply.
  local cur = redis.call('HGETALL', h)
  local early = redis.call('EXISTS', KEYS[k + 6])
  if #cur > 0 then
    local f = fieldsOf(cur)
    if isOpen(f['s']) then
      return {'exists', cur, early}
    end
    -- A replay of the step visit that started the closed task is a no-op;
    -- another visit (a saga looping back into the step) starts afresh.
    if ARGV[a + 15] ~= '' then
      if f['sk'] == ARGV[a + 15] then
        return {'exists', cur, early}
      end
    elseif ARGV[a + 10] ~= '' and f['rq'] == ARGV[a + 10] and f['st'] == ARGV[a + 9] then
      return {'exists', cur, early}
    end
    if redis.call('ZSCORE', KEYS[k + 3], id) then
      return {'pending'}
    end
    -- The replaced task leaves the closed indexes it was listed in, and its
    -- history and change keys go with it.
    redis.call('DEL', h, KEYS[k + 4], KEYS[k + 5])
    forgetClosed(tenantPrefix(ARGV[a + 1], f['tn']), id, f)
  end

  local args, na = {'id', id, 's', 'WAITING', 'v', '1'}, 6
  for i = 1, nnames do
    local v = ARGV[a + i + 2]
    if v ~= '' and not (zero[i] and v == '0') then
      args[na + 1] = names[i]
      args[na + 2] = v
      na = na + 2
    end
  end
  redis.call('HSET', h, unpack(args, 1, na))
  -- The first event (started, Seq 1 = Version 1) is not written: History
  -- reads it off the task, which keeps the start at the writes it had.

  if tonumber(ARGV[a + 12]) > 0 then
    redis.call('ZADD', KEYS[k + 2], ARGV[a + 12], id)
  end
  -- The task enters the listing families of a new WAITING task: every
  -- task of the tenant, its user's, its roles'. This is reindex(tp, id,
  -- nil, fields) written out, as every start runs it, with the sort
  -- members computed by the caller.
  local tp = tenantPrefix(ARGV[a + 1], ARGV[a + 16])
  local s0, dm, pm = ARGV[a + 11], ARGV[a + 22], ARGV[a + 23]
  enter(tp, 'waiting', id, s0, dm, pm)
  if ARGV[a + 7] ~= '' then
    enter(tp, 'u:' .. ARGV[a + 7], id, s0, dm, pm)
  end
  if ARGV[a + 6] ~= '' then
    for role in string.gmatch(ARGV[a + 6], '[^\031]+') do
      enter(tp, 'r:' .. role, id, s0, dm, pm)
    end
  end
  -- Every tenant's open tasks of the shard, counted for the waiting gauge.
  redis.call('INCR', ARGV[a + 1] .. 'nwaiting')
  return {'created', {}, early}
end

local n = math.floor(#KEYS / keysPer)
if #KEYS ~= n * keysPer or #ARGV ~= n * argsPer then
  return redis.error_reply('ERR start: ' .. #KEYS .. ' keys and ' .. #ARGV .. ' args are not whole items')
end
local replies = {}
for i = 0, n - 1 do
  replies[#replies + 1] = itemReply(pcall(startOne, i * keysPer, i * argsPer))
end
return replies
