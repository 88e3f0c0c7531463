-- history: the events of a task, oldest first, read in one step with the
-- task's existence so a task and its history are never seen apart.
-- KEYS: 1 task hash, 2 history
-- Returns {"notfound"} or {"ok", events, HGETALL}: the task's fields give
-- the events no script writes (started, and a plain close's).
local cur = redis.call('HGETALL', KEYS[1])
if #cur == 0 then
  return {'notfound'}
end
return {'ok', redis.call('LRANGE', KEYS[2], 0, -1), cur}
