-- include: layout.lua
-- include: rate.lua
-- include: job.lua
-- include: fleet_pause.lua
-- Stores Segmind's request id the moment the submit is accepted, before anything else can fail;
-- a job cancelled meanwhile keeps its request id but is not polled. The pause's probe, accepted,
-- ends an automatic pause (a submit sent before the pause proves nothing); see fleet_pause.lua.
-- A: job_id, request_id, first_poll_in_s, submit_ok_key
-- Returns {the job's state after the call ('submitted', or what it already was), seconds it
-- waited from created_at to now} or {'gone'}.
local job_id, request_id = A[1], A[2]
local key = K.job .. job_id
local state, batch_id, created_at =
  unpack(redis.call('HMGET', key, 'state', 'batch_id', 'created_at'))
if not state then return {'gone'} end
local waited = tostring(NOW - (tonumber(created_at) or NOW))
redis.call('HSET', key, 'request_id', request_id, 'submitted_at', NOW)
redis.call('HDEL', key, 'claim')
redis.call('ZREM', K.dispatched, job_id)
keep_in_flight(job_id, batch_id, A[3])
record_accepted(A[4], NOW, request_id)
upstream_answered(job_id)
if state ~= 'queued' then return {state, waited} end
redis.call('HSET', key, 'state', 'submitted')
move_count(batch_id, 'queued', 'submitted')
redis.call('ZADD', K.inflight, NOW, job_id)
redis.call('ZADD', K.due, NOW + tonumber(A[3]), job_id)
return {'submitted', waited}
