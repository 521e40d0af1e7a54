-- include: layout.lua
-- Creates a batch's hash once; a cancelled batch takes no new jobs.
-- A: batch_id, defaults_json, source, priority, callback_task, webhook_url
-- Returns 'created', 'exists' or 'cancelled'.
local bk = K.batch .. A[1]
if redis.call('EXISTS', bk) == 1 then
  if redis.call('HEXISTS', bk, 'cancelled_at') == 1 then return 'cancelled' end
  redis.call('EXPIRE', bk, RETENTION_S)
  redis.call('EXPIRE', bk .. ':lines', RETENTION_S)
  return 'exists'
end
redis.call('HSET', bk, 'created_at', NOW, 'defaults', A[2], 'total', 0, 'priority', A[4])
if A[3] ~= '' then redis.call('HSET', bk, 'source', A[3]) end
if A[5] ~= '' then redis.call('HSET', bk, 'callback_task', A[5]) end
if A[6] ~= '' then redis.call('HSET', bk, 'webhook_url', A[6]) end
redis.call('EXPIRE', bk, RETENTION_S)
return 'created'
