-- include: layout.lua
-- include: job.lua
-- A task that starts while its worker drains (SIGTERM) gives its job back unstarted, so
-- another worker takes it at the next dispatcher step instead of after its lease.
--   poll (token given): only while the message holds the job's current token and its poll
--     lease: the job is due at once, and the next step publishes it with a new token
--   submit (token ''): only while the job is queued, published (in segq:dispatched) and
--     unclaimed: back to the front of its lane. If this message was stale and a newer one is
--     in flight, the job goes out twice at worst, and the claim lets one of them submit.
-- A: job_id, token|''
-- Returns 1 if the job was given back, 0 if it was not this message's to give.
local job_id, token = A[1], A[2]
local key = K.job .. job_id
if token ~= '' then
  if redis.call('HGET', key, 'token') ~= token or not redis.call('ZSCORE', K.polling, job_id) then
    return 0
  end
  redis.call('ZREM', K.polling, job_id)
  redis.call('ZADD', K.due, NOW, job_id)
  return 1
end
local state, claim = unpack(redis.call('HMGET', key, 'state', 'claim'))
if state ~= 'queued' or claim or not redis.call('ZSCORE', K.dispatched, job_id) then return 0 end
redis.call('ZREM', K.dispatched, job_id)
requeue_front(job_id)
return 1
