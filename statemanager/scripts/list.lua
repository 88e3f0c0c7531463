-- list: up to limit tasks of one shard, oldest first, from the union of a
-- few index zsets (see redis.go). The indexes are sorted by score, so a
-- merge of their heads reads about limit entries of each: the work follows
-- the page. Only the secondary filters (user, role) can pass over entries,
-- and those entries are the tasks of the caller's own indexes.
-- KEYS: the index zsets (all of one tenant, one shard)
-- ARGV: 1 task hash key prefix "{P:s}:t:", 2 limit, 3 status,
--       4 taskUser filter ("" = any), 5 role filter ("" = any),
--       6 window in ms: a closed index lists only the entries closed within
--       the window before its newest one, as the close script trims it
--       (0: the whole index)
-- Returns an array of HGETALL arrays.
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[6])
local chunk = math.max(limit, 16)

local src = {}
for i = 1, #KEYS do
  local min = '-inf'
  if window > 0 then
    local top = redis.call('ZREVRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if #top == 2 then
      min = tostring(tonumber(top[2]) - window)
    end
  end
  src[i] = {key = KEYS[i], min = min, ids = {}, scores = {}, pos = 1, offset = 0, done = false}
end

local function refill(s)
  local r = redis.call('ZRANGEBYSCORE', s.key, s.min, '+inf', 'WITHSCORES', 'LIMIT', s.offset, chunk)
  s.ids, s.scores, s.pos = {}, {}, 1
  for j = 1, #r, 2 do
    s.ids[#s.ids + 1] = r[j]
    s.scores[#s.scores + 1] = tonumber(r[j + 1])
  end
  s.offset = s.offset + #s.ids
  if #s.ids < chunk then
    s.done = true
  end
end

local out, seen = {}, {}
while #out < limit do
  local best
  for i = 1, #src do
    local s = src[i]
    if s.pos > #s.ids and not s.done then
      refill(s)
    end
    if s.pos <= #s.ids then
      if not best then
        best = s
      else
        local a, b = s.scores[s.pos], best.scores[best.pos]
        if a < b or (a == b and s.ids[s.pos] < best.ids[best.pos]) then
          best = s
        end
      end
    end
  end
  if not best then
    break
  end
  local id = best.ids[best.pos]
  best.pos = best.pos + 1
  if not seen[id] then
    seen[id] = true
    local t = redis.call('HGETALL', ARGV[1] .. id)
    if #t == 0 then
      -- An acked decision expired after ClosedTTL; its entry goes now, so
      -- no later listing reads it again.
      redis.call('ZREM', best.key, id)
      best.offset = best.offset - 1
    else
      local f = {}
      for j = 1, #t, 2 do
        f[t[j]] = t[j + 1]
      end
      local ok = f['s'] == ARGV[3]
      if ok and ARGV[4] ~= '' and f['u'] ~= ARGV[4] then ok = false end
      if ok and ARGV[5] ~= '' then
        local roles = '\031' .. (f['r'] or '') .. '\031'
        if not string.find(roles, '\031' .. ARGV[5] .. '\031', 1, true) then ok = false end
      end
      if ok then
        out[#out + 1] = t
      end
    end
  end
end
return out
