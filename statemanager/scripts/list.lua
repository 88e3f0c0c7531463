-- list: up to limit tasks of one shard from an index zset, oldest first,
-- filtered by status, user and role (see redis.go).
-- KEYS: 1 index zset (waiting, u:<user>, r:<role> or closed)
-- ARGV: 1 task hash key prefix "{P:s}:t:", 2 limit, 3 status ("" = any),
--       4 user ("" = any), 5 role ("" = any), 6 max index entries to scan
-- Returns an array of HGETALL arrays.
local limit = tonumber(ARGV[2])
local maxScan = tonumber(ARGV[6])
local out = {}
local start = 0
local chunk = 128
while #out < limit and start < maxScan do
  local ids = redis.call('ZRANGE', KEYS[1], start, start + chunk - 1)
  if #ids == 0 then
    break
  end
  for i = 1, #ids do
    local t = redis.call('HGETALL', ARGV[1] .. ids[i])
    if #t > 0 then
      local f = {}
      for j = 1, #t, 2 do
        f[t[j]] = t[j + 1]
      end
      local ok = true
      if ARGV[3] ~= '' and f['s'] ~= ARGV[3] then ok = false end
      if ok and ARGV[4] ~= '' and f['u'] ~= ARGV[4] then ok = false end
      if ok and ARGV[5] ~= '' then
        local roles = '\031' .. (f['r'] or '') .. '\031'
        if not string.find(roles, '\031' .. ARGV[5] .. '\031', 1, true) then ok = false end
      end
      if ok then
        out[#out + 1] = t
        if #out >= limit then
          break
        end
      end
    end
  end
  start = start + chunk
end
return out
