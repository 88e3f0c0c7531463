-- ack: the effects of closes are durable; stop tracking them as pending and
-- let each decision expire after ClosedTTL (see redis.go). Many ids of one
-- shard share one call.
-- KEYS: 1 pending, 2.. the task hashes of the ids, in the same order
-- ARGV: 1 ClosedTTL in ms, 2.. ids
--
-- Only a close makes a task pending, and only an ack (this script, which
-- sets the TTL in the same step) takes it out, so a task that leaves the
-- pending set here is closed and has no TTL yet; one that was not pending
-- was acked before and is left alone. The status check keeps a waiting task
-- from ever expiring should the keys have been edited by hand.
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local s = redis.call('HGET', KEYS[i], 's')
    if s and s ~= 'WAITING' then
      redis.call('PEXPIRE', KEYS[i], ARGV[1])
    end
  end
end
return 1
