-- include: layout.lua
-- include: job.lua
-- include: gate.lua
-- Claims a queued job for one submit, so a redelivered message cannot pay twice, if the fleet's
-- gate lets it call now; if not, the job goes back to the front of its lane in the same step
-- (it keeps its place, and no claim is left for a duplicate message to trip on).
-- A: job_id, claim_ttl_s, submit rate key, use_hold (1|0)
-- Returns {'go', params, batch defaults, attempts so far}, {'busy'} (another task holds a fresh
-- claim; the job is looked at again when that claim runs out), {'skip', state}, {'gone'},
-- {'hold', seconds} or {'paused', reason}.
local job_id, claim_ttl = A[1], tonumber(A[2])
local key = K.job .. job_id
local state, request_id, claim, params, batch_id, attempts = unpack(redis.call('HMGET', key,
  'state', 'request_id', 'claim', 'params', 'batch_id', 'attempts'))
if not state then
  -- still leased, it was still counted queued (else a lease that ran out counted it)
  if redis.call('ZREM', K.dispatched, job_id) == 1 then end_expired_queued(job_id) end
  return {'gone'}
end
if state ~= 'queued' or request_id then
  redis.call('ZREM', K.dispatched, job_id)
  return {'skip', state}
end
-- A message whose lease ran out before it got here: the job is back in its lane (or waits in
-- segq:due) and will be published again; this copy must not claim it, or the job would be
-- claimed and queued at once (counted twice by a batch cancel, or in its lane twice).
if not redis.call('ZSCORE', K.dispatched, job_id) then return {'skip', 'unleased'} end
if claim and NOW - tonumber(claim) < claim_ttl then
  redis.call('ZREM', K.dispatched, job_id)
  redis.call('ZADD', K.due, tonumber(claim) + claim_ttl, job_id)
  return {'busy'}
end
-- A stale claim: the task that held it died mid-submit (every other ending clears it), so
-- Segmind may have accepted that submit. Counted, so the record says it may have paid twice.
if claim then redis.call('HINCRBY', key, 'interrupted_submits', 1) end
local verdict = gate_verdict(A[3], job_id, 'submit', A[4], NOW)
if verdict then
  if claim then redis.call('HDEL', key, 'claim') end
  redis.call('ZREM', K.dispatched, job_id)
  requeue_front(job_id)
  return verdict
end
redis.call('HSET', key, 'claim', NOW)
-- a job that waited in its lane nearly the retention must not lose its record (or its
-- batch) mid-call: the request id Segmind is about to issue, and bill, would have nowhere to
-- go. For the claim's time only (never past the retention): storing the request id keeps
-- them for the retention.
keep_for(job_id, batch_id, math.ceil(math.min(claim_ttl, RETENTION_S)))
local defaults = ''
if batch_id then defaults = redis.call('HGET', K.batch .. batch_id, 'defaults') or '' end
return {'go', params, defaults, attempts or '0'}
