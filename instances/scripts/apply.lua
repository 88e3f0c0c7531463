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
  local exists = redis.call('EXISTS', rk) == 1
  local starts = false
  if not exists then
    for j = first, first + n - 1 do
      if string.find(ARGV[j], '"type":"started"', 1, true) then starts = true end
    end
  end
  -- Events of an instance never started here (tracking was off, or its
  -- record expired) have nothing to attach to.
  if exists or starts then
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
        if e.type == 'started' and not status then
          tenant, saga, bk, starter, startedAt = e.tenant or '', e.saga or '', e.businessKey or '', e.actor or '', e.at
          T = P .. 't' .. #tenant .. ':' .. tenant .. ':'
          status = 'RUNNING'
          redis.call('HSET', rk, 'saga', saga, 'version', e.version or 0, 'tenant', tenant, 'starter', starter,
            'bk', bk, 'startedAt', startedAt, 'status', status)
          redis.call('INCR', P .. 'nopen')
          redis.call('ZADD', T .. 'all', startedAt, id)
          redis.call('ZADD', T .. 'open', startedAt, id)
          redis.call('ZADD', T .. 'saga:' .. saga, startedAt, id)
          if bk ~= '' then redis.call('ZADD', T .. 'bk:' .. bk, startedAt, id) end
          if starter ~= '' then redis.call('ZADD', T .. 'v:' .. starter, startedAt, id) end
        elseif e.type == 'step' then
          redis.call('HSET', rk, 'step', e.step or '')
          if e.status == 'WAITING' then
            if e.taskId then redis.call('SADD', ok, (e.domain or '') .. '\t' .. e.taskId) end
          else
            redis.call('HSET', rk, 'lastStatus', e.status or '', 'lastCode', e.code or '', 'lastMessage', e.message or '')
          end
        elseif e.type == 'task' then
          local ref = (e.domain or '') .. '\t' .. (e.taskId or '')
          if openTask[e.status] then
            if not ended(status) then redis.call('SADD', ok, ref) end
          else
            redis.call('SREM', ok, ref)
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
            local status_was_open = status ~= false and status ~= nil
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
      if not ended(status) then
        if redis.call('SCARD', ok) > 0 then status = 'WAITING' else status = 'RUNNING' end
        redis.call('HSET', rk, 'status', status)
      end
      redis.call('HSET', rk, 'updatedAt', updatedAt)
      if startedAt > 0 then redis.call('ZADD', T .. 'upd', updatedAt, id) end
      if ended(status) then
        for _, k in ipairs({rk, lk, kk, ok, pk}) do redis.call('PEXPIRE', k, retention) end
      end
    end
  end
end
return 0
