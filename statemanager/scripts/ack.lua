-- ack: the effects of a close are durable; stop tracking it as pending and
-- let the decision expire after ClosedTTL (see redis.go).
-- KEYS: 1 task hash, 2 pending
-- ARGV: 1 id, 2 ClosedTTL in ms
redis.call('ZREM', KEYS[2], ARGV[1])
local s = redis.call('HGET', KEYS[1], 's')
if s and s ~= 'WAITING' and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
