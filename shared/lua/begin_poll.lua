-- include: layout.lua
-- Admits one poll of a job: only the holder of the job's current poll token polls, so a
-- redelivered or republished poll message does nothing.
-- A: job_id, token
-- Returns {'go', request_id, seconds since submitted (server clock), state, polls, attempts}
-- or {'stale'}.
local key = K.job .. A[1]
local state, token, request_id, submitted_at, attempts = unpack(redis.call('HMGET', key,
  'state', 'token', 'request_id', 'submitted_at', 'attempts'))
if not state or state == 'completed' or state == 'failed' or state == 'cancelled'
    or token ~= A[2] or not request_id then
  return {'stale'}
end
redis.call('ZREM', K.polling, A[1])
local polls = redis.call('HINCRBY', key, 'polls', 1)
return {'go', request_id, tostring(NOW - tonumber(submitted_at)), state, polls, attempts or '0'}
