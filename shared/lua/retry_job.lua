-- include: layout.lua
-- include: job.lua
-- Brings a failed job back. One that Segmind still knows (it gave up while polling) resumes
-- polling its request id, so it is not paid for twice; any other is queued again at the back
-- of its lane.
-- A: token (names the producer's call, see replayed), job_id
-- Returns the job's new state, '' if it was not failed, or 'batch_cancelled' (its batch was
-- cancelled: nothing of it runs again, as retry_batch says before it starts).
local token, job_id = A[1], A[2]
local again = replayed(token, job_id)
if again then return again end
local key = K.job .. job_id
local state, request_id, error_json, batch_id, priority =
  unpack(redis.call('HMGET', key, 'state', 'request_id', 'error', 'batch_id', 'priority'))
if state ~= 'failed' then return '' end
if batch_id and redis.call('HEXISTS', K.batch .. batch_id, 'cancelled_at') == 1 then
  return 'batch_cancelled'
end
local kind = error_json and cjson.decode(error_json).kind or 'unknown'
redis.call('HDEL', key, 'error', 'finished_at', 'attempts', 'last_error', 'claim')
redis.call('EXPIRE', key, RETENTION_S)
local new_state = 'queued'
if request_id and kind == 'retries_exhausted' then
  new_state = 'submitted'
  redis.call('ZADD', K.inflight, NOW, job_id)
  redis.call('ZADD', K.due, NOW, job_id)
else
  redis.call('HDEL', key, 'request_id', 'submitted_at', 'outputs', 'metrics', 'polls')
  local lane = lane_of(batch_id, priority)
  redis.call('RPUSH', lane, job_id)
  ring_add(lane)
end
redis.call('HSET', key, 'state', new_state)
move_count(batch_id, 'failed', new_state)
if batch_id then
  local bk = K.batch .. batch_id
  redis.call('SREM', bk .. ':failed', job_id)
  redis.call('HINCRBY', bk, 'fail:' .. kind, -1)
  redis.call('HDEL', bk, 'finished_at')
end
keep_reply(token, job_id, new_state)
return new_state
