-- The fleet's pause of new submits (K.fleet). A manual pause holds until resume. An automatic
-- one is probed: every 'probe_every' seconds dispatch.lua lets one submit through (the
-- 'probe_job', which gate.lua admits) and record_submitted.lua ends the pause when Segmind
-- accepts it. Automatic pauses come from account trouble (401/403/406 credits, a spend
-- limit), or from an outage: SEGQ_OUTAGE_FAILURES transient failures in a row across the
-- fleet with no good answer between them ('failing'). An outage pause also ends at the first
-- good answer of any kind (upstream_answered), since Segmind answering is all it waited for.
local PAUSE_FIELDS = {'paused', 'reason', 'since', 'probe_at', 'manual', 'probe_job',
  'probe_every', 'outage'}

local function resume_fleet()
  redis.call('HDEL', K.fleet, unpack(PAUSE_FIELDS))
end

-- Returns 'paused', or 'manual' (an automatic pause never overrides a manual one). A repeated
-- pause keeps its first 'since'.
local function pause_fleet(reason, manual, probe_every, outage)
  local paused, was_manual = unpack(redis.call('HMGET', K.fleet, 'paused', 'manual'))
  if paused and was_manual == '1' and manual ~= '1' then return 'manual' end
  if not paused then
    redis.call('HSET', K.fleet, 'since', NOW)
    redis.call('HDEL', K.fleet, 'probe_job')
  end
  redis.call('HSET', K.fleet, 'paused', 1, 'reason', reason, 'manual', manual,
    'probe_at', NOW + probe_every, 'probe_every', probe_every, 'outage', outage and 1 or 0)
  return 'paused'
end

-- Segmind gave an answer (accepted a submit, reported on a job): the failure streak ends, and
-- so does a pause for an outage. accepted_job: the job whose submit Segmind just accepted, if
-- that is the answer; when it is the pause's probe, an automatic pause of any kind ends.
local function upstream_answered(accepted_job)
  local failing, outage, manual, probe_job =
    unpack(redis.call('HMGET', K.fleet, 'failing', 'outage', 'manual', 'probe_job'))
  if failing then redis.call('HDEL', K.fleet, 'failing') end
  local probe_accepted = accepted_job and manual ~= '1' and probe_job == accepted_job
  if outage == '1' or probe_accepted then resume_fleet() end
end

-- A transient failure (5xx, HTML, no answer). Returns 'paused' if this failure paused the
-- fleet's submits because it looks like an outage, 'held' if they were paused already (by
-- anything), else nil. detail: the failure's own words, for the pause's reason; outage_failures
-- and probe_s: SEGQ_OUTAGE_FAILURES and SEGQ_OUTAGE_PROBE_SECONDS.
local function upstream_failed(http_status, detail, outage_failures, probe_s)
  local failing = redis.call('HINCRBY', K.fleet, 'failing', 1)
  if redis.call('HEXISTS', K.fleet, 'paused') == 1 then return 'held' end
  if failing < outage_failures then return nil end
  local answer = type(http_status) == 'number' and tostring(http_status) or 'no answer'
  local reason = 'Segmind unavailable: ' .. failing .. ' failures in a row, the last '
    .. answer .. ': ' .. string.sub(tostring(detail), 1, 120)
  pause_fleet(reason, '0', probe_s, true)
  return 'paused'
end
