-- include: layout.lua
-- include: job.lua
-- Gives a job back after an upstream call that did not settle it.
--   front: (429, fleet paused) back to the front of its lane; not an attempt
--   defer: (429 or pause while polling) poll again in delay_s; not an attempt
--   retry: (transient failure) one more attempt in delay_s, or failed with kind
--          retries_exhausted and the last error once max_attempts are spent
-- A: job_id, mode, delay_s, error_json, max_attempts
-- Returns {state after the call, then {0}, or ending_of's reply if this call ended the job}.
local job_id, mode, delay_s = A[1], A[2], tonumber(A[3])
local key = K.job .. job_id
local state = redis.call('HGET', key, 'state')
if not state or TERMINAL[state] then return {state or 'gone', 0} end
redis.call('HDEL', key, 'claim')
if mode == 'front' then
  redis.call('ZREM', K.dispatched, job_id)
  requeue_front(job_id)
  return {state, 0}
end
if mode == 'retry' then
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'last_error', A[4])
  if attempts >= tonumber(A[5]) then
    local last = cjson.decode(A[4])
    local exhausted = cjson.encode({kind = 'retries_exhausted', http_status = last.http_status,
      detail = 'gave up after ' .. attempts .. ' attempts; last error: ' .. last.detail})
    finish_job(job_id, 'failed', {'error', exhausted}, 'retries_exhausted')
    local ending = ending_of(job_id)
    table.insert(ending, 1, 'failed')
    return ending
  end
end
redis.call('ZREM', K.dispatched, job_id)
redis.call('ZADD', K.due, NOW + delay_s, job_id)
return {state, 0}
