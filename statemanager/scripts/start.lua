-- start: store a task as WAITING unless its id is taken (see redis.go). The
-- helpers are lib.lua's, prepended at load time.
-- KEYS: 1 task hash, 2 due, 3 pending, 4 history, 5 applied change keys,
--       6 the early answers waiting for the id (redis_early.go)
-- ARGV: 1 shard key prefix "{P:s}:", 2 id, 3 name, 4 spec, 5 action,
--       6 roles (joined by \31), 7 user, 8 saga, 9 stepId, 10 requestId,
--       11 startedAt, 12 deadline, 13 data, 14 envelope, 15 start key,
--       16 tenant, 17 possible outcomes (joined by \31),
--       18 required approvals, 19 approver roles (joined by \31), 20 priority,
--       21 started by, 22 and 23 its deadline and priority sort members
--       (redis.go's sortKey, lib.lua's deadlineMember and priorityMember)
-- Returns {"created", {}, early}, {"exists", HGETALL, early} or {"pending"};
-- early is 1 when operations wait for the id (one EXISTS in the task's slot,
-- so a start learns it in this same call).
local h = KEYS[1]
local id = ARGV[2]
-- One read serves both the decision and the "exists" reply.
local cur = redis.call('HGETALL', h)
local early = redis.call('EXISTS', KEYS[6])
if #cur > 0 then
  local f = fieldsOf(cur)
  if isOpen(f['s']) then
    return {'exists', cur, early}
  end
  -- A replay of the step visit that started the closed task is a no-op;
  -- another visit (a saga looping back into the step) starts afresh.
  if ARGV[15] ~= '' then
    if f['sk'] == ARGV[15] then
      return {'exists', cur, early}
    end
  elseif ARGV[10] ~= '' and f['rq'] == ARGV[10] and f['st'] == ARGV[9] then
    return {'exists', cur, early}
  end
  if redis.call('ZSCORE', KEYS[3], id) then
    return {'pending'}
  end
  -- The replaced task leaves the closed indexes it was listed in, and its
  -- history and change keys go with it.
  redis.call('DEL', h, KEYS[4], KEYS[5])
  forgetClosed(tenantPrefix(ARGV[1], f['tn']), id, f)
end

local names = {'n', 'sp', 'a', 'r', 'u', 'sg', 'st', 'rq', 's0', 'dl', 'd', 'e', 'sk', 'tn', 'po', 'ra', 'ar', 'pr', 'sb', 'dm', 'pm'}
local zeroes = {dl = true, ra = true, pr = true}
local args = {'id', id, 's', 'WAITING', 'v', '1'}
for i = 1, #names do
  local v = ARGV[i + 2]
  if v ~= '' and not (zeroes[names[i]] and v == '0') then
    args[#args + 1] = names[i]
    args[#args + 1] = v
  end
end
redis.call('HSET', h, unpack(args))
-- The first event (started, Seq 1 = Version 1) is not written: History
-- reads it off the task, which keeps the start at the writes it had.

if tonumber(ARGV[12]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[12], id)
end
-- The task enters the listing families of a new WAITING task (familiesOf
-- in lib.lua): every task of the tenant, its user's, its roles', each in
-- its three orders (see reindex). This is reindex(tp, id, nil, fields)
-- written out, as every start runs it, with the sort members computed by
-- the caller.
local tp = tenantPrefix(ARGV[1], ARGV[16])
local s0, dm, pm = ARGV[11], ARGV[22], ARGV[23]
local function enter(fam)
  redis.call('ZADD', tp .. fam, s0, id)
  redis.call('ZADD', tp .. 'd:' .. fam, 0, dm)
  if pm ~= '' then
    redis.call('ZADD', tp .. 'p:' .. fam, 0, pm)
  end
end
enter('waiting')
if ARGV[7] ~= '' then
  enter('u:' .. ARGV[7])
end
for role in string.gmatch(ARGV[6], '[^\031]+') do
  enter('r:' .. role)
end
-- Every tenant's open tasks of the shard, counted for the waiting gauge.
redis.call('INCR', ARGV[1] .. 'nwaiting')
return {'created', {}, early}
