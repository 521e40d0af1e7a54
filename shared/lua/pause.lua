-- include: layout.lua
-- include: rate.lua
-- include: fleet_pause.lua
-- Pauses or resumes new submits for the whole fleet (`segq pause`/`segq resume`, or a worker
-- that met account trouble); see fleet_pause.lua. A resume also lifts the holds 429s put on the
-- budgets (a named window may hold for up to a day), but keeps what they taught: the fleet goes
-- on at the learned rate, which a lifted hold cannot turn into a burst.
-- A: action (pause|resume), reason, manual (1|0), probe_every (seconds)
-- Returns 'paused' or 'manual' (an automatic pause left a manual one as it was); for a resume,
-- {'1' if the fleet was paused else '0', then a budget_report (rate.lua) per hold lifted}.

-- Polls a poll budget's hold turned away wait in K.due until the hold's end (begin_poll.lua,
-- or the task's 429): they are due now instead. A submit's hold sends its jobs back to their
-- lanes, where the dispatcher finds them anyway.
local function lift_rate_holds()
  local lifted = {}
  for _, key in ipairs(redis.call('ZRANGE', K.rate_limited, 0, -1)) do
    local report = budget_report(key, NOW)
    if report[2] ~= '' then
      local hold = tonumber(report[2])
      redis.call('HDEL', key, 'hold_until')
      for _, job_id in ipairs(redis.call('ZRANGEBYSCORE', K.due, hold - 1, hold + 1)) do
        redis.call('ZADD', K.due, NOW, job_id)
      end
      for _, value in ipairs(report) do lifted[#lifted + 1] = value end
    end
  end
  return lifted
end

if A[1] == 'resume' then
  local was_paused = redis.call('HEXISTS', K.fleet, 'paused')
  resume_fleet()
  return {tostring(was_paused), unpack(lift_rate_holds())}
end
return pause_fleet(A[2], A[3], tonumber(A[4]), false)
