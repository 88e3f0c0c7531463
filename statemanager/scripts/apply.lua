-- apply: one change of an open task (Lifecycle.Apply), written only if the
-- task is still at the version the caller read, and closing it as close.lua
-- does when the change carries a close. The helpers are lib.lua's,
-- prepended at load time.
-- KEYS: 1 task hash, 2 history, 3 applied change keys, 4 due, 5 pending
-- ARGV: 1 shard key prefix "{P:s}:", 2 id, 3 version read, 4 change key,
--       5 the change's event (see appendEvent), 6 user, 7 roles (joined by
--       \31): "" leaves it, "=" .. value writes it ("=" alone clears it),
--       8 deadline: "" leaves it, else epoch ms (0 removes it),
--       9 close status ("" = no close), 10 closedAt, 11 closedBy,
--       12 closeData, 13 enrichPath, 14 outcome, 15 note,
--       16 closed-index cutoff, 17 ClosedTTL in ms,
--       18.. field, value pairs of plain fields to write ("" deletes)
-- Returns {"notfound"}, {"replay", HGETALL}, {"closed", HGETALL},
-- {"stale", HGETALL} or {"ok", HGETALL after the change}.
local h, hk, kk = KEYS[1], KEYS[2], KEYS[3]
local id, key = ARGV[2], ARGV[4]
local cur = redis.call('HGETALL', h)
if #cur == 0 then
  return {'notfound'}
end
local f = fieldsOf(cur)
-- A replay first: it carries the version it was computed from, which the
-- task has left since it was applied.
if key ~= '' and (f['ck'] == key or redis.call('SISMEMBER', kk, key) == 1) then
  return {'replay', cur}
end
if not isOpen(f['s']) then
  return {'closed', cur}
end
if (tonumber(f['v']) or 0) ~= tonumber(ARGV[3]) then
  return {'stale', cur}
end

local tp = tenantPrefix(ARGV[1], f['tn'])
-- old is the task as indexed; f becomes the task as changed, and reindex
-- moves it between the listing families (lib.lua) once, at the end.
local old = fieldsOf(cur)
-- hx marks a task with a history list and change keys of its own, which
-- its ack expires with it (a task only started and closed has neither).
local set, del = {'hx', '1'}, {}
local function write(name, v)
  if v == '' then
    del[#del + 1] = name
    f[name] = nil
  else
    set[#set + 1] = name
    set[#set + 1] = v
    f[name] = v
  end
end

-- A new taskUser or new roles move the task between the tenant's per-user
-- and per-role families (reindex below); its startedAt stays.
if ARGV[6] ~= '' then
  write('u', string.sub(ARGV[6], 2))
end
if ARGV[7] ~= '' then
  write('r', string.sub(ARGV[7], 2))
end
-- The due index is what the timers read: a deadline moved into the past
-- makes the task due at once.
if ARGV[8] ~= '' then
  -- The stored deadline member (dm, see deadlineMember) is of the old
  -- deadline: dropped, the new one is computed where needed.
  write('dm', '')
  if tonumber(ARGV[8]) > 0 then
    redis.call('ZADD', KEYS[4], ARGV[8], id)
    write('dl', ARGV[8])
  else
    redis.call('ZREM', KEYS[4], id)
    write('dl', '')
  end
end
for i = 18, #ARGV, 2 do
  write(ARGV[i], ARGV[i + 1])
end
if #del > 0 then
  redis.call('HDEL', h, unpack(del))
end

if ARGV[9] ~= '' then
  if #set > 0 then
    redis.call('HSET', h, unpack(set))
  end
  local c = newCloser(ARGV[1], KEYS[4], KEYS[5], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13])
  local decision = decisionOf(ARGV[9], ARGV[10], ARGV[11], ARGV[12], key, ARGV[13], ARGV[14], ARGV[15])
  closeTask(c, h, id, f, cur, decision, ARGV[5], old)
  finishCloses(c, ARGV[16], ARGV[17])
else
  local v = tostring((tonumber(f['v']) or 0) + 1)
  set[#set + 1] = 'v'
  set[#set + 1] = v
  redis.call('HSET', h, unpack(set))
  reindex(tp, id, old, f)
  appendEvent(hk, v, ARGV[5])
  if key ~= '' then
    redis.call('SADD', kk, key)
  end
end
return {'ok', redis.call('HGETALL', h)}
