-- Helpers for scripts that change a job's state. Invariants they keep:
--   * a queued job is in exactly one of: its lane, segq:dispatched, segq:due
--   * a submitted or running job is in segq:inflight and segq:due
--   * segq:stats and the batch hash count every job once, under its current state
local TERMINAL = {completed = true, failed = true, cancelled = true}

-- How long a producer's call is remembered (segq:reply:{token}): far longer than redis-py's
-- RECONNECTS take to send a call again, short enough that the replies of a burst of enqueues
-- cost little memory; never longer than the retention, as they name jobs.
local REPLY_KEPT_S = math.min(60, RETENTION_S)

-- The reply this part of a producer's call (a script call: its first job id) got when Redis
-- ran it before, or nil. A call whose reply a broken connection lost is sent again as it was
-- (RECONNECTS), token included; run a second time it would find its own work done and report
-- the jobs it created as existing, the job it retried as not failed.
local function replayed(token, part)
  local kept = redis.call('HGET', K.reply .. token, part)
  return kept and cjson.decode(kept)
end

-- Remembers what a call changed; one that changed nothing needs no memory, as a second run
-- answers the same.
local function keep_reply(token, part, reply)
  local key = K.reply .. token
  redis.call('HSET', key, part, cjson.encode(reply))
  redis.call('EXPIRE', key, REPLY_KEPT_S)
end

-- Makes a key live at least ttl_s more (never shortens it: another job of the batch may
-- have asked for longer).
local function extend_ttl(key, ttl_s)
  local left = redis.call('TTL', key)
  if left == -1 or (left >= 0 and left < ttl_s) then redis.call('EXPIRE', key, ttl_s) end
end

-- Keeps a job's record and its batch (its hash and its lines bitmap) at least ttl_s more.
local function keep_for(job_id, batch_id, ttl_s)
  extend_ttl(K.job .. job_id, ttl_s)
  if batch_id then
    extend_ttl(K.batch .. batch_id, ttl_s)
    extend_ttl(K.batch .. batch_id .. ':lines', ttl_s)
  end
end

-- A job being followed (submitted upstream, polled, retried) is kept, with its batch, for the
-- retention past the moment it is next due: retention counts from a job's end, and a job
-- Segmind accepted is paid for, so its record must not run out while it runs there.
local function keep_in_flight(job_id, batch_id, due_in_s)
  keep_for(job_id, batch_id, math.ceil(RETENTION_S + math.max(0, tonumber(due_in_s) or 0)))
end

-- Sets the batch's TTL (its hash and its lines bitmap) to the retention, once it has ended.
local function expire_batch(batch_id)
  redis.call('EXPIRE', K.batch .. batch_id, RETENTION_S)
  redis.call('EXPIRE', K.batch .. batch_id .. ':lines', RETENTION_S)
end

local function move_count(batch_id, from, to, n)
  n = n or 1
  if from then redis.call('HINCRBY', K.stats, from, -n) end
  redis.call('HINCRBY', K.stats, to, n)
  if batch_id then
    local bk = K.batch .. batch_id
    if from then redis.call('HINCRBY', bk, from, -n) end
    redis.call('HINCRBY', bk, to, n)
    extend_ttl(bk, RETENTION_S)
    extend_ttl(bk .. ':lines', RETENTION_S)
  end
end

-- Marks the batch finished, and lets it expire, once none of its jobs is open any more.
local function close_if_ended(batch_id)
  local bk = K.batch .. batch_id
  local open = redis.call('HMGET', bk, 'queued', 'submitted', 'running')
  if (tonumber(open[1]) or 0) + (tonumber(open[2]) or 0) + (tonumber(open[3]) or 0) <= 0 then
    redis.call('HSET', bk, 'finished_at', NOW)
    expire_batch(batch_id)  -- its last job ended: none is followed any more
  end
end

-- A queued job whose record expired before a worker took it (it waited longer than the
-- retention): nothing of it is left to run, yet the fleet's counts and its batch's still hold
-- it as queued, and a batch never ends while they do. Found where the dispatcher meets its id
-- (a lane, segq:dispatched, segq:due), it is counted failed with kind expired_in_queue.
-- Its id names its batch (batch ids hold no dot); a batch that expired too is not made again.
-- Only a count above zero is moved: a lane entry left by a job that ran, ended and expired
-- since then must not take a count below zero.
local function end_expired_queued(job_id)
  local batch_id = string.match(job_id, '^(.*)%.')
  local bk = batch_id and K.batch .. batch_id
  if bk and redis.call('EXISTS', bk) == 1 then
    if (tonumber(redis.call('HGET', bk, 'queued')) or 0) <= 0 then return end
    move_count(batch_id, 'queued', 'failed')
    redis.call('HINCRBY', bk, 'fail:expired_in_queue', 1)
    close_if_ended(batch_id)
  elseif (tonumber(redis.call('HGET', K.stats, 'queued')) or 0) > 0 then
    move_count(nil, 'queued', 'failed')
  end
  redis.call('PUBLISH', K.events .. job_id, 'failed')
end

local function lane_of(batch_id, priority)
  if priority == 'interactive' then return K.interactive end
  return K.bulk_lane .. (batch_id or '_')
end

-- Puts a bulk lane in the round-robin ring if it is not there yet.
local function ring_add(lane)
  if lane ~= K.interactive and not redis.call('LPOS', K.ring, lane) then
    redis.call('RPUSH', K.ring, lane)
  end
end

-- Puts a queued job back where the dispatcher looks first (it keeps its place); one whose
-- record expired meanwhile ends there.
local function requeue_front(job_id)
  local state, batch_id, priority =
    unpack(redis.call('HMGET', K.job .. job_id, 'state', 'batch_id', 'priority'))
  if not state then end_expired_queued(job_id) end
  if state ~= 'queued' then return end
  local lane = lane_of(batch_id, priority)
  redis.call('LPUSH', lane, job_id)
  ring_add(lane)
end

-- Whether the batch names a callback task or webhook for its jobs.
local function batch_wants_notice(batch_id)
  local told = redis.call('HMGET', K.batch .. batch_id, 'callback_task', 'webhook_url')
  return (told[1] or told[2]) and true or false
end

-- Lists a cancelled batch's notify lane (its queued jobs, told of their end a few at a time
-- by the dispatcher) for as long as the retention.
local function list_notify_lane(batch_id)
  redis.call('EXPIRE', K.notify_lane .. batch_id, RETENTION_S)
  redis.call('SADD', K.notify_lanes, batch_id)
end

-- When a record still 'queued' ended with its cancelled batch (it was in its bulk lane at the
-- cancel, counted cancelled then, and reads as cancelled: see cancel_batch.lua): the batch's
-- cancelled_at; nil for any other record.
local function cancelled_with_batch(state, batch_id)
  if state ~= 'queued' or not batch_id then return nil end
  return redis.call('HGET', K.batch .. batch_id, 'cancelled_at') or nil
end

-- Whether a callback task or webhook waits to hear that the job ended (its own, or its batch's).
local function wants_notice(job_id, batch_id)
  local told = redis.call('HMGET', K.job .. job_id, 'callback_task', 'webhook_url')
  if told[1] or told[2] then return true end
  return batch_id and batch_wants_notice(batch_id) or false
end

-- Ends a job once (compare-and-set on a non-terminal state). fields: extra HSET pairs.
local function finish_job(job_id, new_state, fields, error_kind)
  local key = K.job .. job_id
  local state, batch_id = unpack(redis.call('HMGET', key, 'state', 'batch_id'))
  if not state or TERMINAL[state] then return 0 end
  redis.call('HSET', key, 'state', new_state, 'finished_at', NOW, unpack(fields))
  redis.call('HDEL', key, 'claim')
  move_count(batch_id, state, new_state)
  redis.call('ZREM', K.due, job_id)
  redis.call('ZREM', K.inflight, job_id)
  redis.call('ZREM', K.dispatched, job_id)
  redis.call('ZREM', K.polling, job_id)
  redis.call('EXPIRE', key, RETENTION_S)
  if batch_id then
    local bk = K.batch .. batch_id
    if new_state == 'failed' then
      local failed_key = bk .. ':failed'
      redis.call('SADD', failed_key, job_id)
      redis.call('EXPIRE', failed_key, RETENTION_S)
      redis.call('HINCRBY', bk, 'fail:' .. error_kind, 1)
    end
    close_if_ended(batch_id)
  end
  redis.call('PUBLISH', K.events .. job_id, new_state)
  -- in the same step as the ending: a worker that dies right after cannot lose the notice
  if wants_notice(job_id, batch_id) then redis.call('ZADD', K.notify, NOW, job_id) end
  return 1
end

-- What the worker that ended a job logs and measures, so it need not read the record again:
-- {1, created_at, finished_at, request_id or '', polls}, as strings (a Lua number would be
-- cut to an integer on its way to the client).
local function ending_of(job_id)
  local created_at, finished_at, request_id, polls = unpack(redis.call('HMGET', K.job .. job_id,
    'created_at', 'finished_at', 'request_id', 'polls'))
  return {1, created_at or '', finished_at or '', request_id or '', polls or '0'}
end
