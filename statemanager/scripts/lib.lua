-- lib: the helpers the start, close and apply scripts share, prepended to
-- each of them when redis.go loads it, so that a task closes the same way
-- whichever script closes it and the key layout is spelled once.

-- The listing indexes live under the tenant's prefix: the shard prefix for
-- the default tenant "" (so its keys are those of a single-tenant store) and
-- "{P:s}:n<len>:<tenant>:" for others; the length keeps a tenant with ':' in
-- its name from reaching another tenant's keys.
local function tenantPrefix(p, tn)
  if tn == nil or tn == '' then
    return p
  end
  return p .. 'n' .. #tn .. ':' .. tn .. ':'
end

-- The open statuses (statemanager.Open): the task can still change, its
-- deadline runs and it is listed as waiting.
local function isOpen(s)
  return s == 'WAITING' or s == 'IN_APPROVAL'
end

local function fieldsOf(cur)
  local f = {}
  for i = 1, #cur, 2 do
    f[cur[i]] = cur[i + 1]
  end
  return f
end

-- The inbox's sort keys (redis.go's sortKey computes the same in Go):
-- fixed-width numbers then the id, so byte order is the listing's order.
-- Values are clamped into what a double holds exactly.
local keyMax = 9000000000000000
local keyPriorityZero = 5000000000000000
local keyPriorityMax = 4000000000000000

local function pad(n)
  if n < 0 then
    n = 0
  elseif n > keyMax then
    n = keyMax
  end
  return string.format('%016d', n)
end

local function startedKey(f)
  return pad(tonumber(f['s0'] or '0') or 0)
end

-- deadlineMember: earliest deadline first, tasks without one last, then
-- the oldest. A start stores it as the task's dm field (and apply drops
-- that when the deadline moves), so the close of a task reads it instead of
-- formatting it again; pm likewise.
local function deadlineMember(f, id)
  if f['dm'] then
    return f['dm']
  end
  local dl = tonumber(f['dl'] or '0') or 0
  if dl <= 0 or dl >= keyMax then
    dl = keyMax
  end
  return pad(dl) .. startedKey(f) .. id
end

-- priorityMember: the highest priority first, then the oldest; nil for a
-- task of priority 0, which no p: index holds (list.lua reads those from
-- the family's order by start, where they are in this order already).
local function priorityMember(f, id)
  if f['pm'] then
    return f['pm']
  end
  local pr = tonumber(f['pr'] or '0') or 0
  if pr == 0 then
    return nil
  end
  if pr > keyPriorityMax then
    pr = keyPriorityMax
  elseif pr < -keyPriorityMax then
    pr = -keyPriorityMax
  end
  return pad(keyPriorityZero - pr) .. startedKey(f) .. id
end

-- familiesOf names the listing families an open task is in, relative to
-- its tenant prefix (see redis.go): 'o' for those counting their
-- IN_APPROVAL members in q:<family>, 'a' for the approver families, which
-- hold IN_APPROVAL tasks only. A closed task (or none) is in no family.
local function familiesOf(f)
  local fam = {}
  if not f or not isOpen(f['s']) then
    return fam
  end
  fam['waiting'] = 'o'
  if f['u'] then
    fam['u:' .. f['u']] = 'o'
  end
  for role in string.gmatch(f['r'] or '', '[^\031]+') do
    fam['r:' .. role] = 'o'
  end
  -- The claimer and the executor find the tasks they work on.
  if f['cl'] then
    fam['c:' .. f['cl']] = 'o'
  end
  if f['cp'] then
    fam['c:' .. f['cp']] = 'o'
  end
  if f['s'] == 'IN_APPROVAL' then
    for role in string.gmatch(f['ar'] or f['r'] or '', '[^\031]+') do
      fam['a:' .. role] = 'a'
    end
  end
  return fam
end

-- reindex moves task id from the families its fields old put it in to
-- those of new (nil: none), under tenant prefix tp. Each family F is three
-- zsets: F by startedAt, d:F and p:F ordered by member (deadlineMember,
-- priorityMember); q:F counts F's IN_APPROVAL tasks, so a count of one
-- status is read off the cardinalities. Families a change leaves alone
-- are not written.
local function reindex(tp, id, old, new)
  local of, nf = familiesOf(old), familiesOf(new)
  local oq = old ~= nil and old['s'] == 'IN_APPROVAL'
  local nq = new ~= nil and new['s'] == 'IN_APPROVAL'
  local od, op, nd, np
  if old then
    od, op = deadlineMember(old, id), priorityMember(old, id)
  end
  if new then
    nd, np = deadlineMember(new, id), priorityMember(new, id)
  end
  for fam, kind in pairs(of) do
    local k = tp .. fam
    if not nf[fam] then
      redis.call('ZREM', k, id)
      redis.call('ZREM', tp .. 'd:' .. fam, od)
      if op then
        redis.call('ZREM', tp .. 'p:' .. fam, op)
      end
      if kind == 'o' and oq then
        redis.call('DECR', tp .. 'q:' .. fam)
      end
    else
      if od ~= nd then
        redis.call('ZREM', tp .. 'd:' .. fam, od)
        redis.call('ZADD', tp .. 'd:' .. fam, 0, nd)
      end
      if op ~= np then
        if op then
          redis.call('ZREM', tp .. 'p:' .. fam, op)
        end
        if np then
          redis.call('ZADD', tp .. 'p:' .. fam, 0, np)
        end
      end
      if kind == 'o' and oq ~= nq then
        redis.call('INCRBY', tp .. 'q:' .. fam, nq and 1 or -1)
      end
    end
  end
  local s0 = new and (new['s0'] or '0')
  for fam, kind in pairs(nf) do
    if not of[fam] then
      redis.call('ZADD', tp .. fam, s0, id)
      redis.call('ZADD', tp .. 'd:' .. fam, 0, nd)
      if np then
        redis.call('ZADD', tp .. 'p:' .. fam, 0, np)
      end
      if kind == 'o' and nq then
        redis.call('INCR', tp .. 'q:' .. fam)
      end
    end
  end
end

-- leave takes task id out of listing family fam under tenant prefix tp, in
-- its three orders (od and op its deadline and priority members, op nil
-- when it has none), and out of the family's IN_APPROVAL count when dq.
local function leave(tp, fam, id, od, op, dq)
  redis.call('ZREM', tp .. fam, id)
  redis.call('ZREM', tp .. 'd:' .. fam, od)
  if op then
    redis.call('ZREM', tp .. 'p:' .. fam, op)
  end
  if dq then
    redis.call('DECR', tp .. 'q:' .. fam)
  end
end

-- unindex is reindex(tp, id, f, nil), which every close runs, without the
-- tables familiesOf builds: the task leaves each family it is in, each once.
local function unindex(tp, id, f)
  if not isOpen(f['s']) then
    return
  end
  local od, op = deadlineMember(f, id), priorityMember(f, id)
  local q = f['s'] == 'IN_APPROVAL'
  leave(tp, 'waiting', id, od, op, q)
  if f['u'] then
    leave(tp, 'u:' .. f['u'], id, od, op, q)
  end
  local r = f['r'] or ''
  if string.find(r, '\031', 1, true) then
    local seen = {}
    for role in string.gmatch(r, '[^\031]+') do
      if not seen[role] then
        seen[role] = true
        leave(tp, 'r:' .. role, id, od, op, q)
      end
    end
  elseif r ~= '' then
    leave(tp, 'r:' .. r, id, od, op, q)
  end
  local cl, cp = f['cl'], f['cp']
  if cl then
    leave(tp, 'c:' .. cl, id, od, op, q)
  end
  if cp and cp ~= cl then
    leave(tp, 'c:' .. cp, id, od, op, q)
  end
  if q then
    local seen = {}
    for role in string.gmatch(f['ar'] or f['r'] or '', '[^\031]+') do
      if not seen[role] then
        seen[role] = true
        leave(tp, 'a:' .. role, id, od, op, false)
      end
    end
  end
end

-- actorsOf is who acted on a task, each once: its closer by, its claimer
-- and its executor. A closed task is listed in the cb:<status>:<user>
-- index of each, which is a person's history.
local function actorsOf(f, by)
  local a, b, c = by or '', f['cl'] or '', f['cp'] or ''
  if b == a then
    b = ''
  end
  if c == a or c == b then
    c = ''
  end
  local out, n = {}, 0
  if a ~= '' then
    n = n + 1
    out[n] = a
  end
  if b ~= '' then
    n = n + 1
    out[n] = b
  end
  if c ~= '' then
    n = n + 1
    out[n] = c
  end
  return out
end

-- forgetClosed takes a closed task (fields f) out of the closed indexes
-- of its tenant (prefix tp), before a new start replaces it.
local function forgetClosed(tp, id, f)
  redis.call('ZREM', tp .. 'closed:' .. f['s'], id)
  for _, u in ipairs(actorsOf(f, f['cb'])) do
    redis.call('ZREM', tp .. 'cb:' .. f['s'] .. ':' .. u, id)
  end
end

-- A history keeps the newest historyCap events (see redis.go).
local historyCap = 1000

-- appendEvent appends an event to the history list hk. tail is the event's
-- JSON as Go encodes it, less its leading '{"seq":0,': only the Seq is
-- written here, so no script encodes JSON.
local function appendEvent(hk, seq, tail)
  local n = redis.call('RPUSH', hk, '{"seq":' .. seq .. ',' .. tail)
  if n > historyCap then
    redis.call('LTRIM', hk, -historyCap, -1)
  end
end

-- decisionOf is the HSET arguments of a close; empty values are not written.
local function decisionOf(status, at, by, data, key, enrichPath, outcome, note)
  local d = {'s', status, 'ca', at}
  local names = {'cb', 'cd', 'ck', 'ep', 'oc', 'no'}
  local values = {by, data, key, enrichPath, outcome, note}
  for i = 1, #names do
    if values[i] ~= '' then
      d[#d + 1] = names[i]
      d[#d + 1] = values[i]
    end
  end
  return d
end

-- newCloser holds what the closes of one script call share: the decision's
-- status and time, and the closed indexes written, each trimmed once at the
-- end (finishCloses).
-- data and enrichPath are the decision's (hasData, hasPath: whether it
-- sets them).
local function newCloser(prefix, due, pending, status, at, by, data, enrichPath)
  return {prefix = prefix, due = due, pending = pending, status = status, at = at, by = by,
    hasData = data ~= '', hasPath = enrichPath ~= '',
    trim = {}, closers = {}, seen = {}, n = 0}
end

-- closeTask closes the open task id (hash h, fields f, its HGETALL cur)
-- with decision, appends the closing event (tail, see appendEvent) and
-- returns cur with what it wrote appended, the reply a close answers.
-- indexed, when given, are the fields the task is indexed under (apply.lua
-- closes with fields it has just changed); f otherwise.
local function closeTask(c, h, id, f, cur, decision, tail, indexed)
  local v = tostring((tonumber(f['v']) or 0) + 1)
  local tp = tenantPrefix(c.prefix, f['tn'])
  redis.call('HSET', h, 'v', v, unpack(decision))
  if c.status ~= 'COMPLETED' then
    -- Only a completion hands data to the saga: an executor's data kept
    -- for its approvals (cd, ep) does not leak into a timeout or cancel.
    local drop = {}
    if not c.hasData and f['cd'] then
      drop[#drop + 1] = 'cd'
    end
    if not c.hasPath and f['ep'] then
      drop[#drop + 1] = 'ep'
    end
    if #drop > 0 then
      redis.call('HDEL', h, unpack(drop))
    end
  end
  redis.call('ZREM', c.due, id)
  unindex(tp, id, indexed or f)
  redis.call('ZADD', c.pending, c.at, id)
  local ck = tp .. 'closed:' .. c.status
  redis.call('ZADD', ck, c.at, id)
  if not c.seen[ck] then
    c.seen[ck] = true
    c.trim[#c.trim + 1] = ck
  end
  for _, u in ipairs(actorsOf(f, c.by)) do
    local cb = tp .. 'cb:' .. c.status .. ':' .. u
    redis.call('ZADD', cb, c.at, id)
    if not c.seen[cb] then
      c.seen[cb] = true
      c.trim[#c.trim + 1] = cb
      c.closers[#c.closers + 1] = cb
    end
  end
  -- A plain close writes no event: History reads it off the decision.
  -- Apply passes its own (an approval that closes, say).
  if tail ~= '' then
    appendEvent(c.prefix .. 'h:' .. id, v, tail)
  end
  for i = 1, #decision do
    cur[#cur + 1] = decision[i]
  end
  cur[#cur + 1] = 'v'
  cur[#cur + 1] = v
  c.n = c.n + 1
  return cur
end

-- finishCloses counts the closed tasks out of the shard's waiting count and
-- trims the closed indexes written to the closed-index cutoff; the
-- per-closer ones also expire after ClosedTTL (ttl ms) when idle, since
-- people come and go.
local function finishCloses(c, cutoff, ttl)
  if c.n > 0 then
    redis.call('DECRBY', c.prefix .. 'nwaiting', c.n)
  end
  for i = 1, #c.trim do
    redis.call('ZREMRANGEBYSCORE', c.trim[i], '-inf', '(' .. cutoff)
  end
  for i = 1, #c.closers do
    redis.call('PEXPIRE', c.closers[i], ttl)
  end
end


-- itemReply is the reply of one item of a script that serves many (start,
-- close), given pcall's results for it: the item's own reply, or
-- {'error', message} when it failed, so that one item's failure is a value
-- its caller gets and the items after it still run. (What the failed item
-- wrote before failing stays written, as it would have alone: Redis does
-- not roll a script back.)
local function itemReply(ok, r)
  if ok then
    return r
  end
  if type(r) == 'table' then
    r = r.err or r.message
  end
  return {'error', tostring(r)}
end
