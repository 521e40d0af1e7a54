-- include: layout.lua
-- include: rate.lua
-- include: job.lua
-- One step of a dispatcher: what to publish now, and when to look again.
--  1. submit leases that ran out (the task died): the job goes back to the front of its lane,
--     unless a task claimed it less than lease_s ago
--  2. due jobs: a job with a request id gets a poll (if the poll budget has a slot and fewer
--     than `window` polls wait in the broker); a queued job whose retry backoff is over goes
--     back to the front of its lane
--  3. submits, while the fleet is not paused (or a probe is due), the broker window and the
--     in-flight cap have room, and the submit budget has a slot: interactive lane first, but
--     every 4th slot to bulk when both wait; bulk lanes round-robin
--  4. due notices (a callback or webhook to tell, or to try again): leased for lease_s, so a
--     notify task that dies is published again; the notify task removes or reschedules them;
--     then notices of cancelled batches' queued jobs, while segq:notify has room
-- A: window, max_in_flight (0: none), lease_s, max_items, submit_rate_key, poll_rate_key,
--    submit_max_rate (0: none), poll_max_rate (0: none), safety, pause_s, limit_submits (1|0),
--    idle_s
-- Returns {seconds until the next step is worth taking, n_submits, n_notices, submit ids...,
--          notice job ids..., (poll job id, token)...}
local window, max_in_flight, lease_s = tonumber(A[1]), tonumber(A[2]), tonumber(A[3])
local max_items = tonumber(A[4])
local submit_key, poll_key = A[5], A[6]
local safety, pause_s = tonumber(A[9]), tonumber(A[10])
local submit_rate = nil
if A[11] == '1' then submit_rate = rate_now(submit_key, tonumber(A[7]), safety, NOW) end
local poll_rate = rate_now(poll_key, tonumber(A[8]), safety, NOW)
local wake = NOW + tonumber(A[12])
local INTERACTIVE_STREAK = 3
local NOTICE_TOPUP_S = 0.2  -- how soon a step looks again while notify lanes wait
local MAX_SKIPS = 100

local function pop_bulk()
  for _ = 1, redis.call('LLEN', K.ring) do
    local lane = redis.call('LMOVE', K.ring, K.ring, 'LEFT', 'RIGHT')
    local job_id = redis.call('LPOP', lane)
    if job_id then return job_id end
    redis.call('LREM', K.ring, 1, lane)
  end
  return nil
end

local function pop_lanes()
  local streak = tonumber(redis.call('HGET', K.fleet, 'streak')) or 0
  local waiting = redis.call('LLEN', K.interactive)
  if waiting > 0 and streak < INTERACTIVE_STREAK then
    redis.call('HINCRBY', K.fleet, 'streak', 1)
    return redis.call('LPOP', K.interactive)
  end
  local job_id = pop_bulk()
  if job_id then
    redis.call('HSET', K.fleet, 'streak', 0)
    return job_id
  end
  return redis.call('LPOP', K.interactive)
end

-- The next queued job; entries of jobs that are no longer queued are dropped on the way.
local function pop_next()
  for _ = 1, MAX_SKIPS do
    local job_id = pop_lanes()
    if not job_id then return nil end
    local state = redis.call('HGET', K.job .. job_id, 'state')
    if state == 'queued' then return job_id end
    if not state then end_expired_queued(job_id) end
  end
  return nil
end

local function earliest(zset)
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if first[2] then wake = math.min(wake, tonumber(first[2])) end
end

for _, job_id in ipairs(redis.call('ZRANGEBYSCORE', K.dispatched, '-inf', NOW, 'LIMIT', 0, max_items)) do
  local claim = tonumber(redis.call('HGET', K.job .. job_id, 'claim'))
  if claim and NOW - claim < lease_s then
    -- claimed late in its lease (its message waited, or its call is slow): a submit is under
    -- way, and the job stays leased until its claim runs out
    redis.call('ZADD', K.dispatched, claim + lease_s, job_id)
  else
    redis.call('ZREM', K.dispatched, job_id)
    requeue_front(job_id)
  end
end

-- Polls whose lease ran out were lost (begin_poll takes a job off K.polling).
redis.call('ZREMRANGEBYSCORE', K.polling, '-inf', NOW)
local poll_room = window - redis.call('ZCARD', K.polling)
local polls = {}
local polls_held = false
for _, job_id in ipairs(redis.call('ZRANGEBYSCORE', K.due, '-inf', NOW, 'LIMIT', 0, max_items)) do
  local key = K.job .. job_id
  local state, request_id, batch_id =
    unpack(redis.call('HMGET', key, 'state', 'request_id', 'batch_id'))
  if not state or TERMINAL[state] then
    redis.call('ZREM', K.due, job_id)
    -- a record that expired in flight (retention shorter than the job): no index keeps it;
    -- one not in flight was queued, waiting out a retry's backoff
    if not state and redis.call('ZREM', K.inflight, job_id) == 0 then
      end_expired_queued(job_id)
    end
  elseif request_id then
    if #polls / 2 >= poll_room then polls_held = true; break end
    local slot = next_slot_at(poll_key, poll_rate, NOW)
    if slot > NOW then wake = math.min(wake, slot); polls_held = true; break end
    spend_slot(poll_key, poll_rate, slot)
    polls[#polls + 1] = job_id
    polls[#polls + 1] = redis.call('HINCRBY', key, 'token', 1)
    redis.call('ZADD', K.due, NOW + lease_s, job_id)
    redis.call('ZADD', K.polling, NOW + lease_s, job_id)
    keep_in_flight(job_id, batch_id, lease_s)  -- a lost poll is republished, not expired
  else
    redis.call('ZREM', K.due, job_id)
    requeue_front(job_id)
  end
end
-- Overdue polls held back by the budget or the window would make the next step due at once.
if not polls_held then earliest(K.due) end

local room = window - redis.call('ZCARD', K.dispatched)
if max_in_flight > 0 then
  room = math.min(room, max_in_flight - redis.call('ZCARD', K.inflight)
    - redis.call('ZCARD', K.dispatched))
end
room = math.min(room, max_items)
local paused, manual, probe_at, probe_every =
  unpack(redis.call('HMGET', K.fleet, 'paused', 'manual', 'probe_at', 'probe_every'))
local probing = false
if paused then
  if manual == '1' then
    room = 0
  elseif NOW < tonumber(probe_at) then
    room = 0
    wake = math.min(wake, tonumber(probe_at))
  else
    room = math.min(room, 1)
    probing = true
  end
end

local submits, lanes = {}, {}
while #submits < room do
  local slot = next_slot_at(submit_key, submit_rate, NOW)
  if slot > NOW then wake = math.min(wake, slot); break end
  local job_id = pop_next()
  if not job_id then break end
  spend_slot(submit_key, submit_rate, slot)
  redis.call('ZADD', K.dispatched, NOW + lease_s, job_id)
  local batch_id, priority = unpack(redis.call('HMGET', K.job .. job_id, 'batch_id', 'priority'))
  if batch_id then redis.call('HSETNX', K.batch .. batch_id, 'started_at', NOW) end
  submits[#submits + 1] = job_id
  lanes[#lanes + 1] = priority == 'interactive' and 'i' or 'b'
end
if probing and #submits > 0 then
  redis.call('HSET', K.fleet, 'probe_at', NOW + (tonumber(probe_every) or pause_s),
    'probe_job', submits[1])
end
earliest(K.dispatched)

local notices = redis.call('ZRANGEBYSCORE', K.notify, '-inf', NOW, 'LIMIT', 0, max_items)
for _, job_id in ipairs(notices) do
  if redis.call('EXISTS', K.job .. job_id) == 1 then
    redis.call('ZADD', K.notify, NOW + lease_s, job_id)
  else
    redis.call('ZREM', K.notify, job_id)  -- the record expired before anyone could be told
  end
end
-- Queued jobs of a cancelled batch wait in its notify lane (cancel_batch.lua); their notices
-- join segq:notify only while it holds fewer than `window`, so cancelling a million-job batch
-- never floods the broker with notify tasks.
local topup = math.min(max_items - #notices, window - redis.call('ZCARD', K.notify))
for _, batch_id in ipairs(redis.call('SMEMBERS', K.notify_lanes)) do
  if topup <= 0 then break end
  local lane = K.notify_lane .. batch_id
  for _, job_id in ipairs(redis.call('LPOP', lane, topup) or {}) do
    if redis.call('EXISTS', K.job .. job_id) == 1 then
      redis.call('ZADD', K.notify, NOW + lease_s, job_id)
      notices[#notices + 1] = job_id
      topup = topup - 1
    end
  end
  if redis.call('EXISTS', lane) == 0 then redis.call('SREM', K.notify_lanes, batch_id) end
end
earliest(K.notify)
if redis.call('SCARD', K.notify_lanes) > 0 then wake = math.min(wake, NOW + NOTICE_TOPUP_S) end

-- Each submit's lane, one letter a submit ('i' interactive, 'b' bulk): interactive submits go
-- to a queue of their own, since behind a window of bulk submits in one FIFO queue a
-- person's job would wait for the whole window.
local reply = {tostring(math.max(0, wake - NOW)), #submits, #notices, table.concat(lanes)}
for _, job_id in ipairs(submits) do reply[#reply + 1] = job_id end
for _, job_id in ipairs(notices) do reply[#reply + 1] = job_id end
for _, item in ipairs(polls) do reply[#reply + 1] = item end
return reply
