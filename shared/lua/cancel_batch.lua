-- include: layout.lua
-- include: job.lua
-- Cancels a whole batch at once, whatever its size: its bulk lane (every job in it is queued)
-- is counted as cancelled in one step; those job records keep state 'queued' and read as
-- cancelled because the batch has cancelled_at. The lane is dropped with UNLINK, or, when the
-- batch names a callback or webhook, renamed to the batch's notify lane, from which the
-- dispatcher schedules each job's notice a few at a time (dispatch.lua). Jobs already handed
-- to the broker, waiting for a retry, or running upstream (a bounded number) end one by one.
-- A: batch_id
-- Returns the number of jobs cancelled, or -1 if there is no such batch.
local batch_id = A[1]
local bk = K.batch .. batch_id
if redis.call('EXISTS', bk) == 0 then return -1 end
if redis.call('HEXISTS', bk, 'cancelled_at') == 1 then return 0 end
redis.call('HSET', bk, 'cancelled_at', NOW)
local lane = K.bulk_lane .. batch_id
local n = redis.call('LLEN', lane)
if n > 0 and batch_wants_notice(batch_id) then
  local notify_lane = K.notify_lane .. batch_id
  redis.call('RENAME', lane, notify_lane)
  redis.call('EXPIRE', notify_lane, RETENTION_S)
  redis.call('SADD', K.notify_lanes, batch_id)
else
  redis.call('UNLINK', lane)
end
redis.call('LREM', K.ring, 0, lane)
if n > 0 then move_count(batch_id, 'queued', 'cancelled', n) end
local member_prefix = batch_id .. '.'
local function cancel_members(job_ids)
  for _, job_id in ipairs(job_ids) do
    if string.sub(job_id, 1, #member_prefix) == member_prefix then
      local priority = redis.call('HGET', K.job .. job_id, 'priority')
      n = n + finish_job(job_id, 'cancelled', {}, '')
      if priority == 'interactive' then redis.call('LREM', K.interactive, 1, job_id) end
    end
  end
end
cancel_members(redis.call('ZRANGE', K.dispatched, 0, -1))
cancel_members(redis.call('ZRANGE', K.due, 0, -1))
cancel_members(redis.call('LRANGE', K.interactive, 0, -1))
local open = redis.call('HMGET', bk, 'queued', 'submitted', 'running')
if (tonumber(open[1]) or 0) + (tonumber(open[2]) or 0) + (tonumber(open[3]) or 0) <= 0 then
  redis.call('HSET', bk, 'finished_at', NOW)
end
return n
