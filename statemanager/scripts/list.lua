-- list: up to limit tasks of one shard in the listing's order, from the
-- union of a few index zsets of one family kind (see redis_list.go), or in
-- count mode how many of them match. The indexes are ordered, so a merge
-- of their heads reads about limit entries of each: the work follows the
-- page. Only the secondary filters (user, role, claimer, candidate) can
-- pass over entries, and those entries are the tasks of the indexes the
-- filter itself names. The helpers are lib.lua's, prepended at load time.
-- KEYS: the index zsets (all of one tenant, one shard)
-- ARGV: 1 task hash key prefix "{P:s}:t:", 2 limit, 3 status,
--       4 taskUser filter ("" = any), 5 role filter ("" = any),
--       6 window in ms: a closed index lists only the entries closed within
--       the window before its newest one, as the close script trims it
--       (0: the whole index),
--       7 index kind: "s" scored by time (member: the id), "l" ordered by
--       member (deadlineMember, priorityMember), "p" the priority order:
--       the first half of KEYS ordered by member (the p: indexes, tasks of
--       a priority other than 0) and the second half the same families by
--       start, read as the tasks of priority 0 (their members would be
--       "<keyPriorityZero><startedAt><id>", the order by start),
--       8 the sort key of the last task of the previous page ("" = from the
--       start): only tasks after it are listed,
--       9 claimedBy filter ("" = any), 10 "1" to keep only the tasks the
--       candidate may take up, 11 the candidate's user, 12 its roles (joined
--       by \31),
--       13 count mode when > 0: walk at most that many entries,
--       14 listing: walk at most that many entries (0: no bound)
-- Returns {HGETALL arrays, cut}: cut is "" when the walk ended, else the
-- sort key of the last entry it walked before its bound: every entry up to
-- it was considered, and the listing goes on after it. In count mode
-- {n, 1}, or {0, 0} when the walk passed its bound.
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[6])
local kind = ARGV[7]
local lex = kind == 'l' or kind == 'p'
-- In the priority order the second half of KEYS are families by start,
-- each read as priority-0 tasks under zeroKey.
local nlex = #KEYS
local zeroKey = '5000000000000000'
if kind == 'p' then
  nlex = #KEYS / 2
end
local after = ARGV[8]
local countCap = tonumber(ARGV[13])
local walkCap = tonumber(ARGV[14] or '0') or 0
local counting = countCap > 0
local chunk = math.max(limit, 16)
if counting then
  chunk = 256
end

-- Byte order, as Redis orders members and Go sorts the merged page; Lua's
-- own string comparison follows the server's locale.
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local src = {}
for i = 1, #KEYS do
  local min = '-inf'
  local zero = kind == 'p' and i > nlex
  local done = false
  if zero then
    -- Priority-0 tasks come after every positive priority and before
    -- every negative one: a cursor among the first starts them from the
    -- beginning, one among them from its time, one past them skips them.
    local p = string.sub(after, 1, 16)
    if after ~= '' and p == zeroKey then
      min = string.sub(after, 17, 32)
    elseif after ~= '' and p > zeroKey then
      done = true
    end
  elseif not lex then
    local floor
    if window > 0 then
      local top = redis.call('ZREVRANGE', KEYS[i], 0, 0, 'WITHSCORES')
      if #top == 2 then
        floor = tonumber(top[2]) - window
      end
    end
    if after ~= '' then
      local c = tonumber(string.sub(after, 1, 16))
      if not floor or c > floor then
        floor = c
      end
    end
    if floor then
      min = tostring(floor)
    end
  end
  src[i] = {key = KEYS[i], min = min, ids = {}, keys = {}, pos = 1, offset = 0, done = done,
    lex = lex and not zero, zero = zero}
end

local function refill(s)
  s.ids, s.keys, s.pos = {}, {}, 1
  local r, n
  if s.lex then
    local from = '-'
    if after ~= '' then
      from = '(' .. after
    end
    r = redis.call('ZRANGEBYLEX', s.key, from, '+', 'LIMIT', s.offset, chunk)
    n = #r
    for j = 1, #r do
      if #r[j] > 32 then
        s.ids[#s.ids + 1] = string.sub(r[j], 33)
        s.keys[#s.keys + 1] = r[j]
      end
    end
  else
    r = redis.call('ZRANGEBYSCORE', s.key, s.min, '+inf', 'WITHSCORES', 'LIMIT', s.offset, chunk)
    n = #r / 2
    for j = 1, #r, 2 do
      local k = pad(tonumber(r[j + 1])) .. r[j]
      if s.zero then
        k = zeroKey .. k
      end
      -- Entries at the cursor's time up to the cursor itself were listed.
      if after == '' or before(after, k) then
        s.ids[#s.ids + 1] = r[j]
        s.keys[#s.keys + 1] = k
      end
    end
  end
  s.offset = s.offset + n
  if n < chunk then
    s.done = true
  end
end

local status, user, role, claimedBy = ARGV[3], ARGV[4], ARGV[5], ARGV[9]
local candidate, cUser = ARGV[10] == '1', ARGV[11]
local cRoles = {}
for r in string.gmatch(ARGV[12], '[^\031]+') do
  cRoles[r] = true
end

local function holdsOne(roles)
  for r in string.gmatch(roles or '', '[^\031]+') do
    if cRoles[r] then
      return true
    end
  end
  return false
end

-- mayTakeUp: the candidate may claim a WAITING task offered to it and not
-- claimed by another, or approve an IN_APPROVAL one (SPEC §12: it holds an
-- approver role, did not complete it and has not approved it yet).
local function mayTakeUp(f)
  if f['s'] == 'IN_APPROVAL' then
    if not holdsOne(f['ar'] or f['r']) or (cUser ~= '' and f['cp'] == cUser) then
      return false
    end
    if cUser ~= '' and f['ap'] then
      local ok, aps = pcall(cjson.decode, f['ap'])
      if ok and type(aps) == 'table' then
        for _, a in ipairs(aps) do
          if type(a) == 'table' and a['user'] == cUser then
            return false
          end
        end
      end
    end
    return true
  end
  if not ((cUser ~= '' and f['u'] == cUser) or holdsOne(f['r'])) then
    return false
  end
  return f['cl'] == nil or f['cl'] == cUser
end

local function matches(f)
  if f['s'] ~= status then return false end
  if user ~= '' and f['u'] ~= user then return false end
  if role ~= '' and not string.find('\031' .. (f['r'] or '') .. '\031', '\031' .. role .. '\031', 1, true) then
    return false
  end
  if claimedBy ~= '' and f['cl'] ~= claimedBy then return false end
  if candidate and not mayTakeUp(f) then return false end
  return true
end

local out, seen = {}, {}
local walked, n = 0, 0
local cut = ''

while counting or #out < limit do
  local best
  for i = 1, #src do
    local s = src[i]
    while s.pos > #s.ids and not s.done do
      refill(s)
    end
    if s.pos <= #s.ids then
      if not best or before(s.keys[s.pos], best.keys[best.pos]) then
        best = s
      end
    end
  end
  if not best then
    break
  end
  local id, member = best.ids[best.pos], best.keys[best.pos]
  best.pos = best.pos + 1
  if not seen[id] then
    if not counting and walkCap > 0 and walked >= walkCap then
      -- A filter that passes over many entries (tasks claimed by others,
      -- say) must not hold the server: the page ends short here, and the
      -- cursor goes on after the last entry walked.
      return {out, cut}
    end
    seen[id] = true
    walked = walked + 1
    cut = member
    if counting and walked > countCap then
      return {0, 0}
    end
    local t = redis.call('HGETALL', ARGV[1] .. id)
    if #t == 0 then
      -- An acked decision expired after ClosedTTL; its entry goes now, so
      -- no later listing reads it again.
      if best.lex then
        redis.call('ZREM', best.key, member)
      else
        redis.call('ZREM', best.key, id)
      end
      best.offset = best.offset - 1
    else
      local f = fieldsOf(t)
      if best.zero and (f['pr'] or '0') ~= '0' then
        -- Not a priority-0 task: its own entry in the p: index lists it
        -- in its place (before this one when its priority is higher).
        seen[id] = nil
      elseif matches(f) then
        if counting then
          n = n + 1
        else
          out[#out + 1] = t
        end
      end
    end
  end
end
if counting then
  return {n, 1}
end
return {out, ''}
