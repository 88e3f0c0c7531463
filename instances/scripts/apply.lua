-- Applies one batch's events to the instances of one shard, atomically.
-- KEYS[1]: a key of the shard (its hash tag routes the call).
-- ARGV: shard prefix P ("{prefix:s}:"), timeline cap, retention (ms), then
-- per group (the events one handled input made for one instance, see
-- Batch): id, key, max at, n events, m fields, then m fields (each event's
-- type and what that type needs, see Batch.appendArgs), then the n events'
-- JSON, in order. Nothing is decoded here: Go passes what is needed.
--
-- Per instance id, under P:
--   i:<id>   hash   the record: saga, version, status, step, tenant,
--                   starter, bk, startedAt, updatedAt, endedAt, lastStatus,
--                   lastCode, lastMessage, seq (events ever appended), nt
--                   (open tasks), np (participants); o:<domain\ttask> per
--                   task, 1 open, 0 closed (a close written before its open
--                   keeps it closed); p:<user> per person who acted on its
--                   tasks (at most 100); k:<group key> per group applied,
--                   its value the seq it reached (replays are dropped; the
--                   oldest are trimmed past 2 x cap events)
--   l:<id>   list   the timeline, oldest first, the newest <cap> kept; an
--                   entry's seq is implicit: the last one's is the record's
-- and P.."nopen", how many instances of the shard are open (every tenant's),
-- and the listing indexes of its tenant T (P.."t"..#T..":"..T..":"), each
-- by startedAt, written when the instance starts or ends, never per step:
--   open (RUNNING or WAITING), st:<end status>, saga:<saga>, bk:<key>,
--   v:<user> (its starter and participants)
--
-- Every Redis call costs the script more than its Lua does, and a Lua
-- number passed to Redis is formatted with sprintf: the script makes as
-- few calls as it can (one read, one write of the record, one push) and
-- passes the strings it was given.
local P = ARGV[1]
local cap = tonumber(ARGV[2])
local retention = ARGV[3]
local negCap = '-' .. ARGV[2]
local maxParticipants = 100

local ended = {COMPLETED = true, FAILED = true, CANCELLED = true}

-- Fields of each op after its type (Batch.appendArgs).
local arity = {S = 6, W = 2, s = 4, T = 2, t = 2, E = 5, x = 0}

-- itos formats a count without sprintf for the small ones.
local function itos(v)
  if v < 10 then return string.char(48 + v) end
  if v < 100 then return string.char(48 + math.floor(v / 10), 48 + v % 10) end
  return tostring(v)
end

-- later reports whether epoch-ms string a is after b (no leading zeros).
local function later(a, b)
  return #a > #b or (#a == #b and a > b)
end

local i = 4
while i <= #ARGV do
  local id, gkey, at, n, m = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local f0 = i + 5
  local j0 = f0 + m
  local nn = tonumber(n)
  i = j0 + nn
  local rk = P .. 'i:' .. id
  -- One read: the group's key (applied already?), the record's fields the
  -- group needs, and the task and user fields its events name.
  local want = {rk, 'k:' .. gkey, 'status', 'startedAt', 'tenant', 'starter', 'seq', 'nt', 'np', 'updatedAt'}
  local w = #want
  local f = f0
  while f < j0 do
    local op = ARGV[f]
    if op == 'W' then
      if ARGV[f + 2] ~= '' then w = w + 1; want[w] = 'o:' .. ARGV[f + 2] end
    elseif op == 'T' or op == 't' then
      want[w + 1] = 'o:' .. ARGV[f + 1]
      want[w + 2] = 'p:' .. ARGV[f + 2]
      w = w + 2
    end
    f = f + 1 + arity[op]
  end
  local rec = redis.call('HMGET', unpack(want))
  if not rec[1] then
    local lk = P .. 'l:' .. id
    local val = {}
    for x = 11, w do val[want[x]] = rec[x - 1] end
    local status0 = rec[2] or ''
    local status, startedAt = status0, rec[3] or ''
    local tenant, starter = rec[4] or '', rec[5] or ''
    local existed = rec[6] ~= false
    local seq0, nt0, np0 = tonumber(rec[6] or '0'), tonumber(rec[7] or '0'), tonumber(rec[8] or '0')
    local nt, np, updatedAt = nt0, np0, rec[9] or ''
    local hs, h = {rk}, 1
    local viewers, nv = {}, 0
    local saga, bk = '', ''
    local endedNow = false
    f = f0
    while f < j0 do
      local op = ARGV[f]
      if op == 'S' then
        if startedAt == '' then
          startedAt, saga, tenant, starter, bk = ARGV[f + 1], ARGV[f + 2], ARGV[f + 4], ARGV[f + 5], ARGV[f + 6]
          hs[h + 1] = 'saga'; hs[h + 2] = saga; hs[h + 3] = 'version'; hs[h + 4] = ARGV[f + 3]
          hs[h + 5] = 'tenant'; hs[h + 6] = tenant; hs[h + 7] = 'starter'; hs[h + 8] = starter
          hs[h + 9] = 'bk'; hs[h + 10] = bk; hs[h + 11] = 'startedAt'; hs[h + 12] = startedAt
          h = h + 12
          if not ended[status] then status = 'RUNNING' end
        end
      elseif op == 'W' then
        hs[h + 1] = 'step'; hs[h + 2] = ARGV[f + 1]; h = h + 2
        -- A task whose close was written first (another partition was
        -- quicker) is not open.
        local ref = ARGV[f + 2]
        if ref ~= '' and not ended[status] and not val['o:' .. ref] then
          val['o:' .. ref] = '1'
          nt = nt + 1
          hs[h + 1] = 'o:' .. ref; hs[h + 2] = '1'; h = h + 2
        end
      elseif op == 's' then
        hs[h + 1] = 'step'; hs[h + 2] = ARGV[f + 1]; hs[h + 3] = 'lastStatus'; hs[h + 4] = ARGV[f + 2]
        hs[h + 5] = 'lastCode'; hs[h + 6] = ARGV[f + 3]; hs[h + 7] = 'lastMessage'; hs[h + 8] = ARGV[f + 4]
        h = h + 8
      elseif op == 'T' or op == 't' then
        local o = 'o:' .. ARGV[f + 1]
        if op == 'T' then
          if not ended[status] and val[o] ~= '1' then
            val[o] = '1'
            nt = nt + 1
            hs[h + 1] = o; hs[h + 2] = '1'; h = h + 2
          end
        elseif val[o] ~= '0' then
          if val[o] == '1' then nt = nt - 1 end
          val[o] = '0'
          hs[h + 1] = o; hs[h + 2] = '0'; h = h + 2
        end
        local who = ARGV[f + 2]
        local p = 'p:' .. who
        if who ~= '' and who ~= starter and not val[p] and np < maxParticipants then
          val[p] = '1'
          np = np + 1
          hs[h + 1] = p; hs[h + 2] = '1'; h = h + 2
          nv = nv + 1
          viewers[nv] = who
        end
      elseif op == 'E' then
        if ARGV[f + 4] ~= '' or ARGV[f + 5] ~= '' then
          hs[h + 1] = 'lastStatus'; hs[h + 2] = ARGV[f + 3]; hs[h + 3] = 'lastCode'; hs[h + 4] = ARGV[f + 4]
          hs[h + 5] = 'lastMessage'; hs[h + 6] = ARGV[f + 5]
          h = h + 6
        end
        if not ended[status] then
          status = ARGV[f + 2]
          endedNow = true
          hs[h + 1] = 'endedAt'; hs[h + 2] = ARGV[f + 1]; h = h + 2
        end
      end
      f = f + 1 + arity[op]
    end
    -- An ended instance has no open task: its o: fields stay, unread.
    if startedAt ~= '' and not ended[status] then
      if nt > 0 then status = 'WAITING' else status = 'RUNNING' end
    end
    if status ~= status0 then hs[h + 1] = 'status'; hs[h + 2] = status; h = h + 2 end
    local seq = n
    if existed then seq = itos(seq0 + nn) end
    hs[h + 1] = 'seq'; hs[h + 2] = seq; hs[h + 3] = 'k:' .. gkey; hs[h + 4] = seq; h = h + 4
    if nt ~= nt0 then hs[h + 1] = 'nt'; hs[h + 2] = itos(nt); h = h + 2 end
    if np ~= np0 then hs[h + 1] = 'np'; hs[h + 2] = itos(np); h = h + 2 end
    if later(at, updatedAt) then hs[h + 1] = 'updatedAt'; hs[h + 2] = at; h = h + 2 end
    redis.call('HSET', unpack(hs, 1, h))
    redis.call('RPUSH', lk, unpack(ARGV, j0, j0 + nn - 1))
    if existed then
      local total = seq0 + nn
      if total > cap then redis.call('LTRIM', lk, negCap, '-1') end
      if math.floor(seq0 / (2 * cap)) ~= math.floor(total / (2 * cap)) then
        -- Past each 2 x cap events, forget the keys of groups older than
        -- the timeline: what they added is gone from it anyway.
        local h2 = redis.call('HGETALL', rk)
        local old = {rk}
        for x = 1, #h2, 2 do
          if string.sub(h2[x], 1, 2) == 'k:' and tonumber(h2[x + 1]) <= total - cap then old[#old + 1] = h2[x] end
        end
        if #old > 1 then redis.call('HDEL', unpack(old)) end
      end
    elseif nn > cap then
      redis.call('LTRIM', lk, negCap, '-1')
    end
    -- The listing indexes change only when the instance starts or ends.
    local T = P .. 't' .. #tenant .. ':' .. tenant .. ':'
    local starts = rec[3] == false and startedAt ~= ''
    if starts then
      redis.call('ZADD', T .. 'saga:' .. saga, startedAt, id)
      if bk ~= '' then redis.call('ZADD', T .. 'bk:' .. bk, startedAt, id) end
      if starter ~= '' then redis.call('ZADD', T .. 'v:' .. starter, startedAt, id) end
      if existed then
        -- Its participants, those from events written before the start
        -- included.
        local keys = redis.call('HKEYS', rk)
        for x = 1, #keys do
          if string.sub(keys[x], 1, 2) == 'p:' then redis.call('ZADD', T .. 'v:' .. string.sub(keys[x], 3), startedAt, id) end
        end
      else
        for x = 1, nv do redis.call('ZADD', T .. 'v:' .. viewers[x], startedAt, id) end
      end
      if ended[status] then
        redis.call('ZADD', T .. 'st:' .. status, startedAt, id)
      else
        redis.call('INCR', P .. 'nopen')
        redis.call('ZADD', T .. 'open', startedAt, id)
      end
    elseif startedAt ~= '' then
      for x = 1, nv do redis.call('ZADD', T .. 'v:' .. viewers[x], startedAt, id) end
      if endedNow then
        redis.call('DECR', P .. 'nopen')
        redis.call('ZREM', T .. 'open', id)
        redis.call('ZADD', T .. 'st:' .. status, startedAt, id)
      end
    end
    -- An ended instance is kept for the retention; one not started yet for
    -- as long, in case its start never comes. Commands that add to a key
    -- keep its expiry, so each key's is set once: when it is created
    -- before the start, or at the end.
    if endedNow or (startedAt == '' and not existed) then
      redis.call('PEXPIRE', rk, retention)
      redis.call('PEXPIRE', lk, retention)
    elseif starts and existed and not ended[status] then
      redis.call('PERSIST', rk)
      redis.call('PERSIST', lk)
    end
  end
end
return 0
