-- Applies one batch's events to the instances of one shard, atomically.
-- KEYS[1]: a key of the shard (its hash tag routes the call).
-- ARGV: shard prefix P ("{prefix:s}:"), timeline cap, retention (ms), then
-- per group (the events one handled input made for one instance, see
-- Batch): id, max at, n events, m fields, r runs, then r pairs of a run's
-- key and its count of events, then m fields (each event's type and what
-- that type needs, see Batch.appendArgs), then the n events'
-- JSON, in order. Nothing is decoded here: Go passes what is needed.
-- A group that starts its instance comes in a fast form instead (r = 0,
-- Batch.appendFresh): the record Go computed as if none existed, written
-- as it is when none does. Returns the places (1 the call's first group)
-- of fast groups whose record existed, which ApplyBatch sends again in the
-- general form.
--
-- Per instance id, under P:
--   i:<id>   hash   the record: saga, version, status, step, tenant,
--                   starter, bk (these three left out when empty),
--                   startedAt, updatedAt, endedAt, lastStatus, lastCode,
--                   lastMessage, seq (events ever appended), nt
--                   (open tasks), np (participants); o:<domain\ttask> per
--                   task, 1 open, 0 closed (a close written before its open
--                   keeps it closed); p:<user> per person who acted on its
--                   tasks (at most 100); k:<run key> per run applied, its
--                   value the seq it reached (a run applied before is
--                   skipped; the oldest are trimmed past 2 x cap events)
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
-- few calls as it can (one read, one write of the record, one push per
-- group; one ZADD or ZREM per listing index and one INCRBY of the open
-- count per call) and passes the strings it was given.

-- Globals are table lookups at each use: the script reads them once.
local call, unpack, tonumber, floor, ARGV = redis.call, unpack, tonumber, math.floor, ARGV
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
  if v < 100 then return string.char(48 + floor(v / 10), 48 + v % 10) end
  return tostring(v)
end

-- later reports whether epoch-ms string a is after b (no leading zeros).
local function later(a, b)
  return #a > #b or (#a == #b and a > b)
end

-- The listing entries this call adds, written at its end with one ZADD per
-- index: zadds[index][id] = score, indexes in zkeys in order of first use.
local zadds, zkeys, nz = {}, {}, 0
local function zadd(index, score, id)
  local z = zadds[index]
  if not z then
    z = {}
    zadds[index] = z
    nz = nz + 1
    zkeys[nz] = index
  end
  z[id] = score
end
-- The open entries this call removes, one ZREM per index at its end:
-- zrems[index] = {id, ...}, indexes in rkeys in order of first use.
local zrems, rkeys, nr = {}, {}, 0
local nopen = 0

-- Groups in the fast form this call left, by their place in it (1 the
-- first group): their records exist, and ApplyBatch sends them again in the
-- general form.
local again, na = {}, 0
local g = 0

local i = 4
while i <= #ARGV do
  local id, at, n, m, r = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  g = g + 1
  if r == 0 then
    -- The fast form (Batch.appendFresh): a group that starts its instance,
    -- with the record Go computed from no record at all. ARGV: id, max at,
    -- n events, m fields, 0, z indexes, 'o' (open) or 'e' (ended),
    -- startedAt, then the m HSET arguments, the z index keys and the n
    -- events' JSON.
    local z, how, s0 = tonumber(ARGV[i + 5]), ARGV[i + 6], ARGV[i + 7]
    local h0 = i + 8
    local z0 = h0 + m
    local j0 = z0 + z
    local nn = tonumber(n)
    i = j0 + nn
    local rk = P .. 'i:' .. id
    if call('EXISTS', rk) == 1 then
      na = na + 1
      again[na] = g
    else
      local lk = P .. 'l:' .. id
      call('HSET', rk, unpack(ARGV, h0, z0 - 1))
      call('RPUSH', lk, unpack(ARGV, j0, i - 1))
      if nn > cap then call('LTRIM', lk, negCap, '-1') end
      for x = z0, j0 - 1 do zadd(ARGV[x], s0, id) end
      if how == 'e' then
        call('PEXPIRE', rk, retention)
        call('PEXPIRE', lk, retention)
      else
        nopen = nopen + 1
      end
    end
  else
    local k0 = i + 5
    local f0 = k0 + 2 * r
    local j0 = f0 + m
    local nn = tonumber(n)
    i = j0 + nn
    local rk = P .. 'i:' .. id
    -- One read: the record's fields the group needs, its runs' keys
    -- (applied already?), and the task and user fields its events name.
    local want = {rk, 'status', 'startedAt', 'tenant', 'starter', 'seq', 'nt', 'np', 'updatedAt',
      false, false, false, false, false, false, false}
    local w = 9
    for x = k0, f0 - 1, 2 do
      w = w + 1
      want[w] = 'k:' .. ARGV[x]
    end
    local w0 = w
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
    local rec = call('HMGET', unpack(want, 1, w))
    local todo, last = 0, 0
    for x = 1, r do
      if not rec[8 + x] then todo, last = todo + 1, x end
    end
    if todo > 0 then
      local lk = P .. 'l:' .. id
      local val = {}
      for x = w0 + 1, w do val[want[x]] = rec[x - 1] end
      local status0 = rec[1] or ''
      local status, startedAt = status0, rec[2] or ''
      local tenant, starter = rec[3] or '', rec[4] or ''
      local existed = rec[5] ~= false
      local seq0, nt0, np0 = tonumber(rec[5] or '0'), tonumber(rec[6] or '0'), tonumber(rec[7] or '0')
      local nt, np, updatedAt = nt0, np0, rec[8] or ''
      -- Room for a start's fields: a table that grows reallocates each time.
      local hs, h = {rk, false, false, false, false, false, false, false, false, false, false, false, false, false,
        false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false,
        false, false}, 1
      local viewers, nv = nil, 0
      local saga, bk = '', ''
      local endedNow = false
      -- What is pushed: all the group's events, or those of the runs not
      -- applied before. ARGV run's key is written with the seq it reached; the
      -- last run's is the record's, written below.
      local push, np2 = nil, 0
      if todo < r then push = {} end
      local pushed, ev = 0, j0
      f = f0
      for x = 1, r do
        local cnt = tonumber(ARGV[k0 + 2 * x - 1])
        if rec[8 + x] then
          for _ = 1, cnt do f = f + 1 + arity[ARGV[f]] end
        else
          for _ = 1, cnt do
            local op = ARGV[f]
            if op == 'S' then
              if startedAt == '' then
                startedAt, saga, tenant, starter, bk = ARGV[f + 1], ARGV[f + 2], ARGV[f + 4], ARGV[f + 5], ARGV[f + 6]
                hs[h + 1] = 'saga'; hs[h + 2] = saga; hs[h + 3] = 'version'; hs[h + 4] = ARGV[f + 3]
                hs[h + 5] = 'startedAt'; hs[h + 6] = startedAt
                h = h + 6
                -- Empty ones are left out: a missing field reads as ''.
                if tenant ~= '' then hs[h + 1] = 'tenant'; hs[h + 2] = tenant; h = h + 2 end
                if starter ~= '' then hs[h + 1] = 'starter'; hs[h + 2] = starter; h = h + 2 end
                if bk ~= '' then hs[h + 1] = 'bk'; hs[h + 2] = bk; h = h + 2 end
                if not ended[status] then status = 'RUNNING' end
              end
            elseif op == 'W' then
              hs[h + 1] = 'step'; hs[h + 2] = ARGV[f + 1]; h = h + 2
              -- ARGV task whose close was written first (another partition was
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
                if nv == 1 then viewers = {who} else viewers[nv] = who end
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
          if push then
            for y = ev, ev + cnt - 1 do
              np2 = np2 + 1
              push[np2] = ARGV[y]
            end
          end
          pushed = pushed + cnt
          if x ~= last then
            hs[h + 1] = want[9 + x]; hs[h + 2] = itos(seq0 + pushed); h = h + 2
          end
        end
        ev = ev + cnt
      end
      -- An ended instance has no open task: its o: fields stay, unread.
      if startedAt ~= '' and not ended[status] then
        if nt > 0 then status = 'WAITING' else status = 'RUNNING' end
      end
      if status ~= status0 then hs[h + 1] = 'status'; hs[h + 2] = status; h = h + 2 end
      local total = seq0 + pushed
      local seq = n
      if existed or pushed ~= nn then seq = itos(total) end
      hs[h + 1] = 'seq'; hs[h + 2] = seq; hs[h + 3] = want[9 + last]; hs[h + 4] = seq; h = h + 4
      if nt ~= nt0 then hs[h + 1] = 'nt'; hs[h + 2] = itos(nt); h = h + 2 end
      if np ~= np0 then hs[h + 1] = 'np'; hs[h + 2] = itos(np); h = h + 2 end
      if later(at, updatedAt) then hs[h + 1] = 'updatedAt'; hs[h + 2] = at; h = h + 2 end
      call('HSET', unpack(hs, 1, h))
      if push then
        call('RPUSH', lk, unpack(push, 1, np2))
      else
        call('RPUSH', lk, unpack(ARGV, j0, j0 + nn - 1))
      end
      if existed then
        if total > cap then call('LTRIM', lk, negCap, '-1') end
        if floor(seq0 / (2 * cap)) ~= floor(total / (2 * cap)) then
          -- Past each 2 x cap events, forget the keys of runs older than
          -- the timeline: what they added is gone from it anyway.
          local h2 = call('HGETALL', rk)
          local old = {rk}
          for x = 1, #h2, 2 do
            if string.sub(h2[x], 1, 2) == 'k:' and tonumber(h2[x + 1]) <= total - cap then old[#old + 1] = h2[x] end
          end
          if #old > 1 then call('HDEL', unpack(old)) end
        end
      elseif pushed > cap then
        call('LTRIM', lk, negCap, '-1')
      end
      -- The listing indexes change only when the instance starts or ends.
      local starts = rec[2] == false and startedAt ~= ''
      if starts then
        local T = P .. 't' .. #tenant .. ':' .. tenant .. ':'
        zadd(T .. 'saga:' .. saga, startedAt, id)
        if bk ~= '' then zadd(T .. 'bk:' .. bk, startedAt, id) end
        if starter ~= '' then zadd(T .. 'v:' .. starter, startedAt, id) end
        if existed then
          -- Its participants, those from events written before the start
          -- included.
          local keys = call('HKEYS', rk)
          for x = 1, #keys do
            if string.sub(keys[x], 1, 2) == 'p:' then zadd(T .. 'v:' .. string.sub(keys[x], 3), startedAt, id) end
          end
        else
          for x = 1, nv do zadd(T .. 'v:' .. viewers[x], startedAt, id) end
        end
        if ended[status] then
          zadd(T .. 'st:' .. status, startedAt, id)
        else
          nopen = nopen + 1
          zadd(T .. 'open', startedAt, id)
        end
      elseif startedAt ~= '' and (nv > 0 or endedNow) then
        local T = P .. 't' .. #tenant .. ':' .. tenant .. ':'
        for x = 1, nv do zadd(T .. 'v:' .. viewers[x], startedAt, id) end
        if endedNow then
          nopen = nopen - 1
          -- Started in this call, its open entry is not written yet.
          local index = T .. 'open'
          local z = zadds[index]
          if z and z[id] then
            z[id] = nil
          else
            local rm = zrems[index]
            if not rm then
              rm = {index}
              zrems[index] = rm
              nr = nr + 1
              rkeys[nr] = index
            end
            rm[#rm + 1] = id
          end
          zadd(T .. 'st:' .. status, startedAt, id)
        end
      end
      -- An ended instance is kept for the retention; one not started yet for
      -- as long, in case its start never comes. Commands that add to a key
      -- keep its expiry, so each key's is set once: when it is created
      -- before the start, or at the end.
      if endedNow or (startedAt == '' and not existed) then
        call('PEXPIRE', rk, retention)
        call('PEXPIRE', lk, retention)
      elseif starts and existed and not ended[status] then
        call('PERSIST', rk)
        call('PERSIST', lk)
      end
  end
  end
end
for x = 1, nz do
  local index = zkeys[x]
  local a, na = {index}, 1
  for id, score in pairs(zadds[index]) do
    a[na + 1] = score
    a[na + 2] = id
    na = na + 2
    if na >= 1001 then
      call('ZADD', unpack(a, 1, na))
      na = 1
    end
  end
  if na > 1 then call('ZADD', unpack(a, 1, na)) end
end
for x = 1, nr do
  local rm = zrems[rkeys[x]]
  for y = 2, #rm, 1000 do call('ZREM', rm[1], unpack(rm, y, math.min(y + 999, #rm))) end
end
if nopen ~= 0 then call('INCRBY', P .. 'nopen', nopen) end
return again
