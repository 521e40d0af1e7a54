-- include: layout.lua
-- Pauses or resumes new submits for the whole fleet. An automatic pause (account trouble) is
-- probed every pause_s (dispatch.lua picks the probe and names it 'probe_job', which
-- gate.lua lets through) and ended by the first accepted submit; a manual pause only by
-- resume. An automatic pause never overrides a manual one; a repeated one keeps its first
-- 'since'.
-- A: action (pause|resume), reason, manual (1|0), pause_s
local action, reason, manual, pause_s = A[1], A[2], A[3], tonumber(A[4])
if action == 'resume' then
  redis.call('HDEL', K.fleet, 'paused', 'reason', 'since', 'probe_at', 'manual', 'probe_job')
  return 'resumed'
end
local paused, was_manual = unpack(redis.call('HMGET', K.fleet, 'paused', 'manual'))
if paused and was_manual == '1' and manual ~= '1' then return 'manual' end
if not paused then
  redis.call('HSET', K.fleet, 'since', NOW)
  redis.call('HDEL', K.fleet, 'probe_job')
end
redis.call('HSET', K.fleet, 'paused', 1, 'reason', reason, 'manual', manual,
  'probe_at', NOW + pause_s)
return 'paused'
