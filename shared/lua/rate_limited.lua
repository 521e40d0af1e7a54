-- include: rate.lua
-- A 429: the whole fleet holds off until the window the answer named (or 2 s), and the budget
-- learns the account's rate: what was accepted in the last minute, times the safety factor.
-- Several 429s from one burst see the same accepted count, so they shrink the rate once.
-- KEYS: rate hash, accepted zset. ARGV: retry_after_s (-1: not named), safety
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local accepted = redis.call('ZCOUNT', KEYS[2], now - RATE_WINDOW_S, '+inf')
local learned = math.max(1, accepted * tonumber(ARGV[2]))
local retry_after = tonumber(ARGV[1])
local hold = now + (retry_after >= 0 and retry_after or 2)
local previous = tonumber(redis.call('HGET', KEYS[1], 'hold_until')) or 0
redis.call('HSET', KEYS[1], 'learned', learned, 'last_429_at', now,
  'hold_until', math.max(hold, previous), 'rate_per_min', learned)
redis.call('EXPIRE', KEYS[1], 86400)
return tostring(math.max(hold, previous) - now)
