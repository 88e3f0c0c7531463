-- close: record the one decision of open tasks of one shard, atomically per
-- id. Close sends one id; the timers send a shard's due deadlines together, so
-- Lua's per-call cost is paid once per batch (see redis.go). The helpers are
-- lib.lua's, prepended at load time.
-- KEYS: 1 due, 2 pending, 3.. the task hashes of the ids
-- ARGV: 1 shard key prefix "{P:s}:", 2 status, 3 closedAt, 4 closedBy,
--       5 closeData, 6 closeKey, 7 enrichPath, 8 closed-index cutoff,
--       9 ClosedTTL in ms, 10 outcome, 11 note, 12 the closing event
--       (see appendEvent), 13 "1" when only a task still due at closedAt
--       may close (a deadline firing), 14.. ids
-- Returns one reply per id, in order: {"notfound"}, {"closed", HGETALL},
-- {"replay", HGETALL}, {"stale", HGETALL} (not due any more),
-- {"approvals", HGETALL} (a COMPLETED close of a task needing approvals) or
-- {"ok", fields}.
local decision = decisionOf(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[10], ARGV[11])
local c = newCloser(ARGV[1], KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7])
local at = tonumber(ARGV[3])

local replies = {}
for n = 14, #ARGV do
  local id = ARGV[n]
  local h = KEYS[n - 11]
  local cur = redis.call('HGETALL', h)
  if #cur == 0 then
    replies[#replies + 1] = {'notfound'}
  else
    local f = fieldsOf(cur)
    if not isOpen(f['s']) then
      if ARGV[6] ~= '' and f['ck'] == ARGV[6] then
        replies[#replies + 1] = {'replay', cur}
      else
        replies[#replies + 1] = {'closed', cur}
      end
    elseif ARGV[13] == '1' and (not f['dl'] or tonumber(f['dl']) > at) then
      -- The deadline moved (or went) since the timer read it: that change
      -- won the race, and the task waits for its new deadline.
      replies[#replies + 1] = {'stale', cur}
    elseif ARGV[2] == 'COMPLETED' and (f['s'] == 'IN_APPROVAL' or (f['ra'] ~= nil and f['ra'] ~= '' and f['ra'] ~= '0')) then
      -- A task that needs approvals completes through the lifecycle
      -- (Apply), never by a plain close that would skip them.
      replies[#replies + 1] = {'approvals', cur}
    else
      replies[#replies + 1] = {'ok', closeTask(c, h, id, f, cur, decision, ARGV[12])}
    end
  end
end
finishCloses(c, ARGV[8], ARGV[9])
return replies
