-- include: layout.lua
-- include: rate.lua
-- include: job.lua
-- include: fleet_pause.lua
-- A poll found the job still QUEUED or PROCESSING upstream: note it and when to look again.
-- A: job_id, token, upstream_status, next_poll_in_s, poll_ok_key
local job_id = A[1]
local key = K.job .. job_id
local state, token, batch_id = unpack(redis.call('HMGET', key, 'state', 'token', 'batch_id'))
record_accepted(A[5], NOW, job_id .. ':' .. (token or ''))
upstream_answered()
if not state or TERMINAL[state] or token ~= A[2] then return 'stale' end
if state == 'submitted' and A[3] == 'PROCESSING' then
  redis.call('HSET', key, 'state', 'running')
  move_count(batch_id, 'submitted', 'running')
  state = 'running'
end
redis.call('ZADD', K.due, NOW + tonumber(A[4]), job_id)
keep_in_flight(job_id, batch_id, A[4])
return state
