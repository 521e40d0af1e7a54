-- include: layout.lua
-- include: fleet_pause.lua
-- Pauses or resumes new submits for the whole fleet (`segq pause`/`segq resume`, or a worker
-- that met account trouble); see fleet_pause.lua.
-- A: action (pause|resume), reason, manual (1|0), probe_every (seconds)
-- Returns 'resumed', 'paused' or 'manual' (an automatic pause left a manual one as it was).
if A[1] == 'resume' then
  resume_fleet()
  return 'resumed'
end
return pause_fleet(A[2], A[3], tonumber(A[4]), false)
