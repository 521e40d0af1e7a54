-- include: layout.lua
-- include: job.lua
-- Adds the jobs that do not exist yet; an existing id is left alone (that is the idempotency).
-- A batch's lines that made a job are marked in its lines bitmap, which lives as long as the
-- batch: a line whose record expired while its batch goes on is not made (and paid for) again.
-- A: token (names the producer's call, see replayed), batch_id|'', priority, callback_task|'',
-- webhook_url|'', then (job_id, line|'', params) x n.
-- Returns per job: 1 created, 0 existed with these params, 2 existed with other params (for
-- a job of no batch, also with another callback, webhook or priority: a batch's options are
-- the batch's, checked as it opens).
local token, batch_id, priority, task, hook = A[1], A[2], A[3], A[4], A[5]
local again = replayed(token, A[6])
if again then return again end
local lane = lane_of(batch_id ~= '' and batch_id or nil, priority)
-- A batch cancelled while its file was still being enqueued (open_batch refuses one cancelled
-- before): the rest of its jobs are made as the cancel left its queued ones, counted
-- cancelled, kept 'queued' (they read as cancelled) in no lane but the batch's notify lane
-- when it names a callback or webhook.
local cancelled = batch_id ~= '' and redis.call('HEXISTS', K.batch .. batch_id, 'cancelled_at') == 1
if cancelled then
  lane = batch_wants_notice(batch_id) and K.notify_lane .. batch_id or nil
end
local lines = batch_id ~= '' and K.batch .. batch_id .. ':lines' or nil
local MAX_MARKED_LINE = 16777216  -- a 2 MB bitmap at most; lines past it are not marked
local function marked(line)
  return line ~= '' and tonumber(line) <= MAX_MARKED_LINE
end
local created, n, max_line = {}, 0, 0
for i = 6, #A, 3 do
  local job_id, line, params = A[i], A[i + 1], A[i + 2]
  local key = K.job .. job_id
  local exists = redis.call('EXISTS', key) == 1
  if not exists and lines and marked(line) and redis.call('GETBIT', lines, line) == 1 then
    created[#created + 1] = 0  -- ended and expired: in the batch already
  elseif exists then
    local same = redis.call('HGET', key, 'params') == params
    if same and batch_id == '' then
      local had_task, had_hook, held = unpack(redis.call('HMGET', key, 'callback_task',
        'webhook_url', 'priority'))
      same = (had_task or '') == task and (had_hook or '') == hook and (held or 'bulk') == priority
    end
    created[#created + 1] = same and 0 or 2
  else
    local fields = {'state', 'queued', 'created_at', NOW, 'params', params}
    if batch_id ~= '' then
      table.insert(fields, 'batch_id'); table.insert(fields, batch_id)
      table.insert(fields, 'line'); table.insert(fields, line)
    else
      if task ~= '' then table.insert(fields, 'callback_task'); table.insert(fields, task) end
      if hook ~= '' then table.insert(fields, 'webhook_url'); table.insert(fields, hook) end
    end
    if priority == 'interactive' then
      table.insert(fields, 'priority'); table.insert(fields, priority)
    end
    redis.call('HSET', key, unpack(fields))
    redis.call('EXPIRE', key, RETENTION_S)
    if lane then redis.call('RPUSH', lane, job_id) end
    if line ~= '' and tonumber(line) > max_line then max_line = tonumber(line) end
    if lines and marked(line) then redis.call('SETBIT', lines, line, 1) end
    n = n + 1
    created[#created + 1] = 1
  end
end
if n > 0 then
  move_count(batch_id ~= '' and batch_id or nil, nil, cancelled and 'cancelled' or 'queued', n)
  if batch_id ~= '' then
    local bk = K.batch .. batch_id
    redis.call('HINCRBY', bk, 'total', n)
    if not cancelled then redis.call('HDEL', bk, 'finished_at') end
    if max_line > (tonumber(redis.call('HGET', bk, 'max_line')) or 0) then
      redis.call('HSET', bk, 'max_line', max_line)
    end
  end
  if not cancelled then
    ring_add(lane)
  elseif lane then
    list_notify_lane(batch_id)
  end
  keep_reply(token, A[6], created)
end
return created
