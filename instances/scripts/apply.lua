-- Applies one batch's events to the instances of one shard, atomically.
-- KEYS[1]: a key of the shard (its hash tag routes the call).
-- ARGV: shard prefix P ("{prefix:s}:"), timeline cap, retention (ms),
-- then per instance: id, n, n event objects (JSON), in order.
--
-- Per instance id, under P:
--   i:<id>   hash   the record (saga, version, status, step, tenant, starter,
--                   bk, startedAt, updatedAt, endedAt, lastStatus, lastCode,
--                   lastMessage, seq)
--   l:<id>   list   the timeline, oldest first, the newest <cap> kept
--   k:<id>   zset   at -> event key: the events applied (replays dropped)
--   o:<id>   set    the open tasks, "domain\ttaskId"
--   p:<id>   set    the people who acted on its tasks (at most 100)
--   c:<id>   set    its closed tasks, so a close written before its start
--                   does not leave the task open
-- and P.."nopen", how many instances of the shard are open (every tenant's),
-- and the listing indexes of its tenant T (P.."t"..#T..":"..T..":"):
--   all, open, st:<status>, saga:<saga>, bk:<key>, v:<user>  by startedAt
--   upd  by updatedAt
local P = ARGV[1]
local cap = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local maxParticipants = 100

local function ended(s)
  return s == 'COMPLETED' or s == 'FAILED' or s == 'CANCELLED'
end

local endStatus = {finished = 'COMPLETED', failed = 'FAILED', deadLettered = 'FAILED', cancelled = 'CANCELLED'}
local openTask = {WAITING = true, IN_APPROVAL = true}

local i = 4
while i <= #ARGV do
  local id = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  local first = i + 2
  i = first + n
  local rk, lk, kk, ok, pk = P .. 'i:' .. id, P .. 'l:' .. id, P .. 'k:' .. id, P .. 'o:' .. id, P .. 'p:' .. id
  local ck = P .. 'c:' .. id
  -- Events may arrive before the instance's start is written: a task
  -- closed on another partition while the start's batch is still being
  -- made durable, or a start replayed after a crash. They are kept, and
  -- the record stays hidden (no status) and expiring until its start
  -- comes; one that never comes (tracking was off then) expires.
  do
    local starts = false
    local rec = redis.call('HMGET', rk, 'status', 'tenant', 'startedAt', 'updatedAt', 'saga', 'bk', 'starter')
    local status, tenant, startedAt, updatedAt = rec[1], rec[2] or '', tonumber(rec[3] or '0'), tonumber(rec[4] or '0')
    local saga, bk, starter = rec[5] or '', rec[6] or '', rec[7] or ''
    local T = P .. 't' .. #tenant .. ':' .. tenant .. ':'
    local touched = false
    for j = first, first + n - 1 do
      local raw = ARGV[j]
      local e = cjson.decode(raw)
      if redis.call('ZADD', kk, 'NX', e.at, e.key) == 1 then
        touched = true
        if e.type == 'started' and startedAt == 0 then
          starts = true
          tenant, saga, bk, starter, startedAt = e.tenant or '', e.saga or '', e.businessKey or '', e.actor or '', e.at
          T = P .. 't' .. #tenant .. ':' .. tenant .. ':'
          if not ended(status) then status = 'RUNNING' end
          redis.call('HSET', rk, 'saga', saga, 'version', e.version or 0, 'tenant', tenant, 'starter', starter,
            'bk', bk, 'startedAt', startedAt, 'status', status)
          redis.call('ZADD', T .. 'all', startedAt, id)
          if ended(status) then
            redis.call('ZADD', T .. 'st:' .. status, startedAt, id)
          else
            redis.call('INCR', P .. 'nopen')
            redis.call('ZADD', T .. 'open', startedAt, id)
          end
          local who = redis.call('SMEMBERS', pk)
          for _, u in ipairs(who) do redis.call('ZADD', T .. 'v:' .. u, startedAt, id) end
          redis.call('ZADD', T .. 'saga:' .. saga, startedAt, id)
          if bk ~= '' then redis.call('ZADD', T .. 'bk:' .. bk, startedAt, id) end
          if starter ~= '' then redis.call('ZADD', T .. 'v:' .. starter, startedAt, id) end
        elseif e.type == 'step' then
          redis.call('HSET', rk, 'step', e.step or '')
          if e.status == 'WAITING' then
            -- A task whose close was written first (another partition
            -- was quicker) is not open.
            local ref = (e.domain or '') .. '\t' .. (e.taskId or '')
            if e.taskId and not ended(status) and redis.call('SISMEMBER', ck, ref) == 0 then
              redis.call('SADD', ok, ref)
            end
          else
            redis.call('HSET', rk, 'lastStatus', e.status or '', 'lastCode', e.code or '', 'lastMessage', e.message or '')
          end
        elseif e.type == 'task' then
          local ref = (e.domain or '') .. '\t' .. (e.taskId or '')
          if openTask[e.status] then
            if not ended(status) then redis.call('SADD', ok, ref) end
          else
            redis.call('SREM', ok, ref)
            redis.call('SADD', ck, ref)
          end
          local who = e.actor
          if who and who ~= '' and who ~= starter and redis.call('SISMEMBER', pk, who) == 0
              and redis.call('SCARD', pk) < maxParticipants then
            redis.call('SADD', pk, who)
            if startedAt > 0 then redis.call('ZADD', T .. 'v:' .. who, startedAt, id) end
          end
        elseif endStatus[e.type] then
          if e.code or e.message then
            redis.call('HSET', rk, 'lastStatus', e.status or '', 'lastCode', e.code or '', 'lastMessage', e.message or '')
          end
          if not ended(status) then
            local status_was_open = startedAt > 0
            status = endStatus[e.type]
            redis.call('HSET', rk, 'status', status, 'endedAt', e.at)
            redis.call('DEL', ok)
            if status_was_open then redis.call('DECR', P .. 'nopen') end
            if startedAt > 0 then
              redis.call('ZREM', T .. 'open', id)
              redis.call('ZADD', T .. 'st:' .. status, startedAt, id)
            end
          end
        end
        local seq = redis.call('HINCRBY', rk, 'seq', 1)
        redis.call('RPUSH', lk, '{"seq":' .. seq .. ',' .. string.sub(raw, 2))
        if e.at > updatedAt then updatedAt = e.at end
      end
    end
    if touched then
      redis.call('LTRIM', lk, -cap, -1)
      redis.call('ZREMRANGEBYRANK', kk, 0, -(2 * cap) - 1)
      if startedAt > 0 and not ended(status) then
        if redis.call('SCARD', ok) > 0 then status = 'WAITING' else status = 'RUNNING' end
        redis.call('HSET', rk, 'status', status)
      end
      redis.call('HSET', rk, 'updatedAt', updatedAt)
      if startedAt > 0 then redis.call('ZADD', T .. 'upd', updatedAt, id) end
      if ended(status) or startedAt == 0 then
        -- An ended instance is kept for the retention; one not started
        -- yet for as long, in case its start never comes.
        for _, k in ipairs({rk, lk, kk, ok, pk, ck}) do redis.call('PEXPIRE', k, retention) end
      elseif starts then
        for _, k in ipairs({rk, lk, kk, ok, pk, ck}) do redis.call('PERSIST', k) end
      end
    end
  end
end
return 0
