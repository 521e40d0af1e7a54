-- include: rate.lua
-- Spends one slot of a budget for a call the dispatcher did not pay for (a result fetch), and
-- counts the status call that just answered and the fetch itself as accepted: without them the
-- learning after a 429 (rate_limited.lua) would see too few accepted polls and starve them.
-- KEYS: rate hash, accepted zset. ARGV: max_rate (0: none), safety
-- Returns the seconds to wait before making the call.
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local rate = rate_now(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
local slot = next_slot_at(KEYS[1], rate, now)
spend_slot(KEYS[1], rate, math.max(slot, now))
record_accepted(KEYS[2], now, 'status:' .. clock[1] .. clock[2])
record_accepted(KEYS[2], math.max(slot, now), 'result:' .. clock[1] .. clock[2])
return tostring(math.max(0, slot - now))
