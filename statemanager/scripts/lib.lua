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
local function newCloser(prefix, due, pending, status, at, by)
  return {prefix = prefix, due = due, pending = pending, status = status, at = at, by = by,
    trim = {}, closers = {}, seen = {}, n = 0}
end

-- closeTask closes the open task id (hash h, fields f, its HGETALL cur)
-- with decision, appends the closing event (tail, see appendEvent) and
-- returns cur with what it wrote appended, the reply a close answers.
local function closeTask(c, h, id, f, cur, decision, tail)
  local v = tostring((tonumber(f['v']) or 0) + 1)
  local tp = tenantPrefix(c.prefix, f['tn'])
  redis.call('HSET', h, 'v', v, unpack(decision))
  redis.call('ZREM', c.due, id)
  redis.call('ZREM', tp .. 'waiting', id)
  if f['u'] then
    redis.call('ZREM', tp .. 'u:' .. f['u'], id)
  end
  if f['r'] then
    for role in string.gmatch(f['r'], '[^\031]+') do
      redis.call('ZREM', tp .. 'r:' .. role, id)
    end
  end
  redis.call('ZADD', c.pending, c.at, id)
  local ck = tp .. 'closed:' .. c.status
  redis.call('ZADD', ck, c.at, id)
  if not c.seen[ck] then
    c.seen[ck] = true
    c.trim[#c.trim + 1] = ck
  end
  if c.by ~= '' then
    local cb = tp .. 'cb:' .. c.status .. ':' .. c.by
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

