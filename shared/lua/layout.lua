-- The key layout every script receives as its first ARGV entries (built by shared/redis_keys.py),
-- the retention, and the server's clock (one clock for the whole fleet).
-- segq needs one Redis (or a Sentinel-managed primary), not Cluster: scripts touch job keys they
-- discover (from lanes and sorted sets), so not every key can be declared in KEYS.
redis.replicate_commands()
local K = {
  job = ARGV[1], batch = ARGV[2], bulk_lane = ARGV[3], events = ARGV[4],
  interactive = ARGV[5], ring = ARGV[6], dispatched = ARGV[7], due = ARGV[8],
  inflight = ARGV[9], stats = ARGV[10], fleet = ARGV[11], polling = ARGV[12],
  notify = ARGV[13], notify_lanes = ARGV[14], notify_lane = ARGV[15], rate_limited = ARGV[16],
  reply = ARGV[17],
}
local RETENTION_S = tonumber(ARGV[18])
local A = {}
for i = 19, #ARGV do A[#A + 1] = ARGV[i] end
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
