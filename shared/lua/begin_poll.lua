-- include: layout.lua
-- include: job.lua
-- include: gate.lua
-- Admits one poll of a job: only the holder of the job's current poll token polls, so a
-- redelivered or republished poll message does nothing. While the poll budget holds off (a
-- 429's window), the job is looked at again when the hold ends, without counting a poll.
-- A: job_id, token, poll rate key
-- Returns {'go', request_id, seconds since submitted (server clock), state, polls, attempts},
-- {'hold', seconds} or {'stale'}.
local key = K.job .. A[1]
local state, token, request_id, submitted_at, attempts, batch_id = unpack(redis.call('HMGET',
  key, 'state', 'token', 'request_id', 'submitted_at', 'attempts', 'batch_id'))
if not state or state == 'completed' or state == 'failed' or state == 'cancelled'
    or token ~= A[2] or not request_id then
  return {'stale'}
end
redis.call('ZREM', K.polling, A[1])
-- dispatch.lua kept the record for the retention past this poll's lease; a hold moves the
-- next look further, and keeps it past that
local verdict = gate_verdict(A[3], A[1], 'poll', '1', NOW)
if verdict then
  redis.call('ZREM', K.dispatched, A[1])
  redis.call('ZADD', K.due, NOW + tonumber(verdict[2]), A[1])
  keep_in_flight(A[1], batch_id, verdict[2])
  return verdict
end
local polls = redis.call('HINCRBY', key, 'polls', 1)
return {'go', request_id, tostring(NOW - tonumber(submitted_at)), state, polls, attempts or '0'}
