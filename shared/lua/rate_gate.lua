-- Whether a task may make the upstream call it was published for, now. The dispatcher spent
-- the budget when it published the task, but tasks wait in the broker: one published before a
-- 429 or an account pause must not call during the hold or the pause. Only the probe the
-- dispatcher chose submits while the fleet is paused (never under a manual pause).
-- KEYS: rate hash, fleet hash. ARGV: job_id, kind (submit|poll), use_hold (1|0)
-- Returns {'go'}, {'hold', seconds} or {'paused', reason}.
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local job_id, kind = ARGV[1], ARGV[2]
if kind == 'submit' then
  local paused, manual, probe, reason =
    unpack(redis.call('HMGET', KEYS[2], 'paused', 'manual', 'probe_job', 'reason'))
  if paused and (manual == '1' or probe ~= job_id) then return {'paused', reason or ''} end
end
if ARGV[3] == '1' then
  local hold = tonumber(redis.call('HGET', KEYS[1], 'hold_until')) or 0
  if hold > now then return {'hold', tostring(hold - now)} end
end
return {'go'}
