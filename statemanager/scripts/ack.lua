-- ack: the effects of closes are durable; stop tracking them as pending and
-- let each decision expire after ClosedTTL, with its history and change keys
-- (see redis.go). Many ids of one shard share one call. The helpers are
-- lib.lua's, prepended at load time.
-- KEYS: 1 pending, 2.. the task hashes of the ids, in the same order
-- ARGV: 1 ClosedTTL in ms, 2 shard key prefix "{P:s}:", 3.. ids
--
-- Only a close makes a task pending, and only an ack (this script, which
-- sets the TTL in the same step) takes it out, so a task that leaves the
-- pending set here is closed and has no TTL yet; one that was not pending
-- was acked before and is left alone. The status check keeps an open task
-- from ever expiring should the keys have been edited by hand.
for i = 3, #ARGV do
  local h = KEYS[i - 1]
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local f = redis.call('HMGET', h, 's', 'hx')
    if f[1] and not isOpen(f[1]) then
      -- The history and change keys first: they never outlive the hash,
      -- so a new start of the id never finds an old history. Only a task
      -- changed through the lifecycle (hx, see apply.lua) has them.
      if f[2] then
        redis.call('PEXPIRE', ARGV[2] .. 'h:' .. ARGV[i], ARGV[1])
        redis.call('PEXPIRE', ARGV[2] .. 'k:' .. ARGV[i], ARGV[1])
      end
      redis.call('PEXPIRE', h, ARGV[1])
    end
  end
end
return 1
