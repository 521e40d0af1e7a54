-- include: layout.lua
-- include: job.lua
-- include: fleet_pause.lua
-- Ends a job (compare-and-set: a job already ended stays as it is) and tells its waiters.
-- A: job_id, state (completed|failed|cancelled), error_kind|'', then field/value pairs to store
-- (outputs, metrics, error). A job cancelled while queued also leaves its lane. A job that
-- ended on Segmind's word (completed, or failed by its answer) tells the fleet it answers.
-- Returns {0} if the job had already ended (or its batch was cancelled while it was queued),
-- else what ending_of returns (this call ended it).
local job_id, new_state, kind = A[1], A[2], A[3]
local fields = {}
for i = 4, #A do fields[#fields + 1] = A[i] end
local key = K.job .. job_id
local state, batch_id, priority = unpack(redis.call('HMGET', key, 'state', 'batch_id', 'priority'))
if cancelled_with_batch(state, batch_id) then return {0} end  -- counted cancelled already
local ended = finish_job(job_id, new_state, fields, kind)
if ended == 1 and state == 'queued' then
  redis.call('LREM', lane_of(batch_id, priority), 1, job_id)
end
if new_state ~= 'cancelled' and kind ~= 'invalid_params' then upstream_answered() end
if ended == 0 then return {0} end
redis.call('HDEL', key, 'last_error')
return ending_of(job_id)
