-- include: layout.lua
-- include: job.lua
-- Cancels a whole batch at once, whatever its size: its bulk lane (every job in it is queued)
-- is counted as cancelled in one step; those job records keep state 'queued' and read as
-- cancelled because the batch has cancelled_at. The lane is dropped with UNLINK, or, when the
-- batch names a callback or webhook, renamed to the batch's notify lane, from which the
-- dispatcher schedules each job's notice a few at a time (dispatch.lua). Jobs already handed
-- to the broker, waiting for a retry, or running upstream (a bounded number) end one by one.
-- A: batch_id
-- Returns the number of jobs cancelled, or -1 if there is no such batch.
local batch_id = A[1]
local bk = K.batch .. batch_id
if redis.call('EXISTS', bk) == 0 then return -1 end
if redis.call('HEXISTS', bk, 'cancelled_at') == 1 then return 0 end
redis.call('HSET', bk, 'cancelled_at', NOW)
local lane = K.bulk_lane .. batch_id
local n = redis.call('LLEN', lane)
if n > 0 and batch_wants_notice(batch_id) then
  redis.call('RENAME', lane, K.notify_lane .. batch_id)
  list_notify_lane(batch_id)
else
  redis.call('UNLINK', lane)
end
redis.call('LREM', K.ring, 0, lane)
if n > 0 then move_count(batch_id, 'queued', 'cancelled', n) end
local member_prefix = batch_id .. '.'
local function is_member(job_id)
  return string.sub(job_id, 1, #member_prefix) == member_prefix
end
local function cancel_members(job_ids)
  for _, job_id in ipairs(job_ids) do
    if is_member(job_id) then n = n + finish_job(job_id, 'cancelled', {}, '') end
  end
end
cancel_members(redis.call('ZRANGE', K.dispatched, 0, -1))
cancel_members(redis.call('ZRANGE', K.due, 0, -1))
-- An interactive batch's queued jobs share the interactive lane with every other interactive
-- job: the lane is written again without them in one pass (an LREM per job scanned past the
-- jobs of other batches each time: 15 s with Redis blocked, for 20,000 behind 20,000).
local lane_ids = redis.call('LRANGE', K.interactive, 0, -1)
cancel_members(lane_ids)
local kept, expired = {}, 0
for _, job_id in ipairs(lane_ids) do
  if not is_member(job_id) then
    kept[#kept + 1] = job_id
  elseif redis.call('EXISTS', K.job .. job_id) == 0 then
    expired = expired + 1
  end
end
-- Members whose records expired in the lane leave it uncounted otherwise: cancelled, as the
-- bulk lane's are (at most the batch's queued count, see end_expired_queued).
expired = math.min(expired, tonumber(redis.call('HGET', bk, 'queued')) or 0)
if expired > 0 then
  move_count(batch_id, 'queued', 'cancelled', expired)
  n = n + expired
end
if #kept < #lane_ids then
  redis.call('DEL', K.interactive)
  for first = 1, #kept, 1000 do
    redis.call('RPUSH', K.interactive, unpack(kept, first, math.min(first + 999, #kept)))
  end
end
close_if_ended(batch_id)
return n
