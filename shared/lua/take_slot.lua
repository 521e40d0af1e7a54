-- include: rate.lua
-- Spends one slot of a budget for a call the dispatcher did not pay for (a result fetch).
-- KEYS: rate hash. ARGV: max_rate (0: none), safety
-- Returns the seconds to wait before making the call.
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local rate = rate_now(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
local slot = next_slot_at(KEYS[1], rate, now)
spend_slot(KEYS[1], rate, math.max(slot, now))
return tostring(math.max(0, slot - now))
