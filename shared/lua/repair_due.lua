-- include: layout.lua
-- include: job.lua
-- Gives back their next poll to in-flight jobs that lost it. segq:due holds the only one: if
-- Redis evicts it (a maxmemory-policy other than noeviction) or someone deletes it, every job
-- in segq:inflight is never polled again and holds its in-flight slot for ever. A submitted or
-- running job is always in both (job.lua), so one in segq:inflight alone is due now, unless a
-- poll task for it waits in the broker (segq:polling): that one puts it back itself. An entry
-- whose record is gone or ended is dropped, as a dispatcher step would have dropped it.
-- Looks at `count` entries of segq:inflight from rank `start`, so a pass never holds Redis long.
-- A: start, count
-- Returns {rank to start the next call at (0: the pass is over), jobs made due}
local start, count = tonumber(A[1]), tonumber(A[2])
local job_ids = redis.call('ZRANGE', K.inflight, start, start + count - 1)
local made_due, dropped = 0, 0
for _, job_id in ipairs(job_ids) do
  if not redis.call('ZSCORE', K.due, job_id) and not redis.call('ZSCORE', K.polling, job_id) then
    local state = redis.call('HGET', K.job .. job_id, 'state')
    if state and not TERMINAL[state] then
      redis.call('ZADD', K.due, NOW, job_id)
      made_due = made_due + 1
    else
      redis.call('ZREM', K.inflight, job_id)
      dropped = dropped + 1
    end
  end
end
if #job_ids < count then return {0, made_due} end
return {start + count - dropped, made_due}
