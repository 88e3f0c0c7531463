-- Lists one shard's page of an index, newest first, after a cursor.
-- KEYS[1]: the index (a zset of instance ids by startedAt) of the shard.
-- ARGV: shard prefix P, cursor score ('' for none), cursor id, limit,
-- budget (entries read at most), then filters (empty: none): saga, status,
-- businessKey, viewer, startedAfter, startedBefore.
-- Returns {id1, score1, id2, score2, ...} and, when the budget ran out
-- before the index did, two more entries: 'more', the last score read and
-- its id, where the next call goes on.
local idx = KEYS[1]
local P = ARGV[1]
local curScore, curID = ARGV[2], ARGV[3]
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local fSaga, fStatus, fBK, fViewer = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local fAfter, fBefore = tonumber(ARGV[10]), tonumber(ARGV[11])

local max, min = '+inf', '-inf'
if curScore ~= '' then max = curScore end
-- The indexes are by startedAt: a time range bounds what is read.
if fBefore and (max == '+inf' or fBefore < tonumber(max)) then max = fBefore end
if fAfter then min = fAfter end
local out, found, read = {}, 0, 0
local offset = 0
local lastScore, lastID = nil, nil
while found < limit and read < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', idx, max, min, 'WITHSCORES', 'LIMIT', offset, math.min(100, budget - read))
  if #batch == 0 then return out end
  for j = 1, #batch, 2 do
    local id, score = batch[j], batch[j + 1]
    offset = offset + 1
    if not (curScore ~= '' and tonumber(score) == tonumber(curScore) and id >= curID) then
      read = read + 1
      lastScore, lastID = score, id
      local r = redis.call('HMGET', P .. 'i:' .. id, 'saga', 'status', 'bk', 'starter', 'startedAt', 'p:' .. fViewer)
      if not r[2] then
        -- The record expired after its retention: drop the stale entry.
        redis.call('ZREM', idx, id)
        offset = offset - 1
      else
        local ok = (fSaga == '' or r[1] == fSaga) and (fStatus == '' or r[2] == fStatus) and (fBK == '' or r[3] == fBK)
        local started = tonumber(r[5] or '0')
        if ok and fAfter and started < fAfter then ok = false end
        if ok and fBefore and started > fBefore then ok = false end
        if ok and fViewer ~= '' and r[4] ~= fViewer and not r[6] then ok = false end
        if ok then
          out[#out + 1] = id
          out[#out + 1] = score
          found = found + 1
          if found == limit then return out end
        end
      end
      if read >= budget then break end
    end
  end
end
if found < limit and lastScore then
  out[#out + 1] = 'more'
  out[#out + 1] = lastScore
  out[#out + 1] = lastID
end
return out
