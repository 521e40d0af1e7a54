-- include: layout.lua
-- include: job.lua
-- include: fleet_pause.lua
-- Gives a job back after an upstream call that did not settle it.
--   front: (429, fleet paused) back to the front of its lane; not an attempt
--   defer: (429 or pause while polling) poll again in delay_s; not an attempt
--   retry: (transient failure) one more attempt in delay_s, or failed with kind
--          retries_exhausted and the last error: a job Segmind has not accepted once
--          max_attempts are spent; one it accepted (it has a request id, Segmind holds its
--          result) only once upstream_retention_s have passed since then, as the result is gone
--          Every transient failure counts towards the fleet's outage pause (fleet_pause.lua);
--          while submits are paused, a job Segmind has not accepted goes back to the front
--          of its lane instead, its attempts unspent.
--          A submit whose answer was lost (answer_lost '1': Segmind may hold the job) is
--          counted in the job's interrupted_submits, as the retry may pay twice.
-- A: job_id, mode, delay_s, error_json, max_attempts, upstream_retention_s, outage_failures,
--    outage_probe_s, answer_lost ('1' or '0')
-- Returns {state after the call, then ending_of's reply and the error stored if this call
-- ended the job, else 0 and (retry) 'paused' if this failure paused the fleet's submits or
-- 'held' if they were paused already, then 'back_in_lane' if the job, not accepted, went
-- back to its lane}.
local job_id, mode, delay_s = A[1], A[2], tonumber(A[3])
local key = K.job .. job_id
local state, submitted_at, batch_id =
  unpack(redis.call('HMGET', key, 'state', 'submitted_at', 'batch_id'))
submitted_at = tonumber(submitted_at)
if not state or TERMINAL[state] then return {state or 'gone', 0} end
redis.call('HDEL', key, 'claim')
if A[9] == '1' then redis.call('HINCRBY', key, 'interrupted_submits', 1) end
if mode == 'front' then
  redis.call('ZREM', K.dispatched, job_id)
  requeue_front(job_id)
  return {state, 0}
end
local outage = nil
if mode == 'retry' then
  local last = cjson.decode(A[4])
  outage = upstream_failed(last.http_status, last.detail, tonumber(A[7]), tonumber(A[8]))
  if outage and not submitted_at then
    redis.call('ZREM', K.dispatched, job_id)
    requeue_front(job_id)
    return {state, 0, outage, 'back_in_lane'}
  end
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'last_error', A[4])
  local why
  if submitted_at then
    local retention_s = tonumber(A[6])
    if NOW - submitted_at >= retention_s then
      why = 'gave up after ' .. attempts .. ' attempts: Segmind keeps a result '
        .. retention_s .. ' s, and that long has passed since it accepted the job'
    end
  elseif attempts >= tonumber(A[5]) then
    why = 'gave up after ' .. attempts .. ' attempts'
  end
  if why then
    local exhausted = cjson.encode({kind = 'retries_exhausted', http_status = last.http_status,
      detail = why .. '; last error: ' .. last.detail})
    finish_job(job_id, 'failed', {'error', exhausted}, 'retries_exhausted')
    local ending = ending_of(job_id)
    table.insert(ending, 1, 'failed')
    table.insert(ending, exhausted)
    return ending
  end
end
redis.call('ZREM', K.dispatched, job_id)
redis.call('ZADD', K.due, NOW + delay_s, job_id)
keep_in_flight(job_id, batch_id, delay_s)
return {state, 0, outage}
