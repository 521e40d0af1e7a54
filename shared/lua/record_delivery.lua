-- include: layout.lua
-- Appends one callback or webhook delivery attempt to a job's record (the last 20 are kept,
-- and every successful one of the ending it tells of: that is how a notify task knows who was
-- told, and a callback pushed out by a webhook's twentieth failure was published again),
-- without touching its state: a failing callback never changes the job's outcome.
-- A: job_id, delivery_json
local MAX_KEPT = 20
local key = K.job .. A[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local deliveries = cjson.decode(redis.call('HGET', key, 'deliveries') or '[]')
local new = cjson.decode(A[2])
deliveries[#deliveries + 1] = new
local i = 1
while #deliveries > MAX_KEPT and i < #deliveries do
  local old = deliveries[i]
  if old.ok == true and old.finished_at == new.finished_at then
    i = i + 1
  else
    table.remove(deliveries, i)
  end
end
redis.call('HSET', key, 'deliveries', cjson.encode(deliveries))
return #deliveries
