-- include: layout.lua
-- Admits one poll of a job: only the holder of the job's current poll token polls, so a
-- redelivered or republished poll message does nothing.
-- A: job_id, token
-- Returns {'go', request_id, submitted_at, state, polls} or {'stale'}.
local key = K.job .. A[1]
local state, token, request_id, submitted_at =
  unpack(redis.call('HMGET', key, 'state', 'token', 'request_id', 'submitted_at'))
if not state or state == 'completed' or state == 'failed' or state == 'cancelled'
    or token ~= A[2] or not request_id then
  return {'stale'}
end
local polls = redis.call('HINCRBY', key, 'polls', 1)
return {'go', request_id, submitted_at, state, polls}
