-- close: record decisions on open tasks of one shard, atomically per id.
-- The ARGV holds groups, each one decision and the ids it closes: Close
-- sends one id, the timers a shard's due deadlines together, and concurrent
-- closes of one shard share one call (the pipeliner merges their groups), so
-- Lua's per-call cost is paid once per batch (see redis.go). Each id closes
-- exactly as if it were alone. The helpers are lib.lua's, prepended at load
-- time.
-- KEYS: 1 due, 2 pending, 3.. the task hashes of the ids, every group's in
--       order
-- ARGV: 1 shard key prefix "{P:s}:", then each group, at offset g (0 for the
--       first): g+2 status, g+3 closedAt, g+4 closedBy, g+5 closeData,
--       g+6 closeKey, g+7 enrichPath, g+8 closed-index cutoff, g+9 ClosedTTL
--       in ms, g+10 outcome, g+11 note, g+12 the closing event (see
--       appendEvent), g+13 "1" when only a task still due at closedAt may
--       close (a deadline firing), g+14 n, the group's count of ids,
--       g+15..g+14+n the ids; the next group is at g+13+n
-- Returns one reply per id, every group's in order: {"notfound"},
-- {"closed", HGETALL}, {"replay", HGETALL}, {"stale", HGETALL} (not due any
-- more), {"approvals", HGETALL} (a COMPLETED close of a task needing
-- approvals), {"ok", fields}, or {"error", message} when the id failed
-- (itemReply: the other ids still close).

-- closeOne closes the id of ARGV[n] (its hash KEYS[k]) by the decision of
-- the group at offset g.
local function closeOne(c, g, decision, n, k)
  local id = ARGV[n]
  local h = KEYS[k]
  local cur = redis.call('HGETALL', h)
  if #cur == 0 then
    return {'notfound'}
  end
  local f = fieldsOf(cur)
  if not isOpen(f['s']) then
    if ARGV[g + 6] ~= '' and f['ck'] == ARGV[g + 6] then
      return {'replay', cur}
    end
    return {'closed', cur}
  end
  if ARGV[g + 13] == '1' and (not f['dl'] or tonumber(f['dl']) > tonumber(ARGV[g + 3])) then
    -- The deadline moved (or went) since the timer read it: that change
    -- won the race, and the task waits for its new deadline.
    return {'stale', cur}
  end
  if ARGV[g + 2] == 'COMPLETED' and (f['s'] == 'IN_APPROVAL' or (f['ra'] ~= nil and f['ra'] ~= '' and f['ra'] ~= '0')) then
    -- A task that needs approvals completes through the lifecycle
    -- (Apply), never by a plain close that would skip them.
    return {'approvals', cur}
  end
  return {'ok', closeTask(c, h, id, f, cur, decision, ARGV[g + 12])}
end

-- The layout is checked whole before anything is written.
local g, k = 0, 2
while g + 14 <= #ARGV do
  local n = tonumber(ARGV[g + 14])
  if not n or n < 0 then
    break
  end
  k = k + n
  g = g + 13 + n
end
if g + 1 ~= #ARGV or k ~= #KEYS then
  return redis.error_reply('ERR close: ' .. #KEYS .. ' keys and ' .. #ARGV .. ' args are not whole groups')
end

local replies = {}
g, k = 0, 3
while g + 1 < #ARGV do
  local n = tonumber(ARGV[g + 14])
  local first = #replies + 1
  local decision = decisionOf(ARGV[g + 2], ARGV[g + 3], ARGV[g + 4], ARGV[g + 5], ARGV[g + 6], ARGV[g + 7], ARGV[g + 10], ARGV[g + 11])
  local c = newCloser(ARGV[1], KEYS[1], KEYS[2], ARGV[g + 2], ARGV[g + 3], ARGV[g + 4], ARGV[g + 5], ARGV[g + 7])
  for i = 1, n do
    replies[#replies + 1] = itemReply(pcall(closeOne, c, g, decision, g + 14 + i, k))
    k = k + 1
  end
  local ok, err = pcall(finishCloses, c, ARGV[g + 8], ARGV[g + 9])
  if not ok then
    -- The group's closes are made, but their bookkeeping failed: each of
    -- its callers hears of it, as it would have alone.
    for i = first, #replies do
      replies[i] = itemReply(false, err)
    end
  end
  g = g + 13 + n
end
return replies
