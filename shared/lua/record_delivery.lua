-- include: layout.lua
-- Appends one callback or webhook delivery attempt to a job's record (the last 20 are kept),
-- without touching its state: a failing callback never changes the job's outcome.
-- A: job_id, delivery_json
local key = K.job .. A[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local deliveries = cjson.decode(redis.call('HGET', key, 'deliveries') or '[]')
deliveries[#deliveries + 1] = cjson.decode(A[2])
while #deliveries > 20 do table.remove(deliveries, 1) end
redis.call('HSET', key, 'deliveries', cjson.encode(deliveries))
return #deliveries
