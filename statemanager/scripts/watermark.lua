-- watermark: move the TimeoutBetween watermark forward, never back.
-- KEYS: 1 watermark key
-- ARGV: 1 new watermark in epoch ms
local cur = redis.call('GET', KEYS[1])
if not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
