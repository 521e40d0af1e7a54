-- include: layout.lua
-- include: job.lua
-- Settles a job's notice once a notify task told its targets of one ending (or failed to):
-- off the schedule, or back on it in again_in_s. A job that ended again since the task read
-- it (retried, then ended: its ending script scheduled the notice, due now) keeps the notice
-- its new ending scheduled: the task told of the ending before, not of this one.
-- A: job_id, finished_at of the ending told ('' for a job not ended, or gone), again_in_s
--    ('' : off the schedule)
-- Returns 1 if it settled the notice, 0 if a newer ending keeps it.
local job_id, told, again = A[1], tonumber(A[2]), tonumber(A[3])
local state, finished_at, batch_id =
  unpack(redis.call('HMGET', K.job .. job_id, 'state', 'finished_at', 'batch_id'))
local ending = cancelled_with_batch(state, batch_id) or finished_at
if tonumber(ending or '') ~= told then return 0 end
if again then
  redis.call('ZADD', K.notify, NOW + again, job_id)
else
  redis.call('ZREM', K.notify, job_id)
end
return 1
