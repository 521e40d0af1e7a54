-- Whether a task may make the upstream call it was published for, now. The dispatcher spent
-- the budget when it published the task, but tasks wait in the broker: one published before a
-- 429 or an account pause must not call during the hold or the pause. Only the probe the
-- dispatcher chose submits while the fleet is paused (never under a manual pause).
-- Checked inside begin_submit and begin_poll, so a task makes one script call before its
-- HTTP call. use_hold is '1' unless Celery paces submits (SEGQ_RATE_LIMITER=celery).
-- Returns nil (call now), {'hold', seconds} or {'paused', reason}.
local function gate_verdict(rate_key, job_id, kind, use_hold, now)
  if kind == 'submit' then
    local paused, manual, probe, reason =
      unpack(redis.call('HMGET', K.fleet, 'paused', 'manual', 'probe_job', 'reason'))
    if paused and (manual == '1' or probe ~= job_id) then return {'paused', reason or ''} end
  end
  if use_hold == '1' then
    local hold = tonumber(redis.call('HGET', rate_key, 'hold_until')) or 0
    if hold > now then return {'hold', tostring(hold - now)} end
  end
  return nil
end
