-- include: rate.lua
-- A 429: the whole fleet holds off until the window the answer named (or 2 s), and the budget
-- learns the account's rate from what it accepted. The calls accepted since the oldest one of
-- the last minute (t0) are all the account allows until the hold ends, so it allows
-- accepted / (hold end - t0): right for a window of any length up to a minute, whether the
-- fleet just started (t0 opened the account's window) or has been running. Without a named
-- window, or with one that ends more than a minute after t0 (an hourly quota, or a garbled
-- reset that reads as a day), the span is a minute: spread over a day, a minute's calls
-- taught "5 a minute", the floor, for after the hold. The learned rate is never above the
-- rate in use (a 429 says it was too fast) and is cut by the safety factor; nor below half of
-- it, as in AIMD's multiplicative decrease: one 429 on a quiet minute (few calls counted) must
-- not starve the fleet for minutes while the rate grows back. 429s that arrive during the hold
-- are from calls made before it: they shrink the rate no further, and may raise it (never
-- above the configured rate in use): a call Segmind accepted before the window filled, whose
-- answer was recorded only after the first 429 counted (a loaded worker), counts from then on.
-- A 429 on a budget with no rate in use, after fewer of our calls than the lowest published
-- limit allows in a minute, teaches nothing (another client of the key spent the window): it
-- only holds. Nor is a rate learned from scratch ever below that limit; from 1 a minute, the
-- 2%-a-minute growth took hours to give a starved fleet back its account's rate.
-- KEYS: rate hash, accepted zset, segq:rate_limited. ARGV: retry_after_s (-1: not named),
--       max_rate (0: none), safety
redis.replicate_commands()
local DEFAULT_HOLD_S = 2
-- A named window already over (a reset time in the past, Retry-After: 0) still holds this long:
-- without it the tasks already in the broker call at once, each 429 they draw comes after the
-- hold and halves the rate again, and a fleet fell to 1 a minute within a second.
local MIN_HOLD_S = 1
local MIN_SPAN_S = 1
local MAX_DECREASE = 0.5
local LOWEST_PUBLISHED_PER_MIN = 5  -- Segmind Free: 5 requests a minute
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local retry_after, max_rate, safety = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hold = now + (retry_after >= 0 and math.max(retry_after, MIN_HOLD_S) or DEFAULT_HOLD_S)
local since = now - RATE_WINDOW_S
local accepted = redis.call('ZCOUNT', KEYS[2], since, '+inf')
local span = RATE_WINDOW_S
local oldest = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if retry_after >= 0 and oldest[2] then
  span = math.min(RATE_WINDOW_S, math.max(MIN_SPAN_S, hold - tonumber(oldest[2])))
end
local learned = accepted * 60 / span * safety
local previous, known = unpack(redis.call('HMGET', KEYS[1], 'hold_until', 'learned'))
previous = tonumber(previous) or 0
if now < previous and known then
  learned = math.max(learned, tonumber(known))
  if max_rate > 0 then learned = math.min(learned, max_rate * safety) end
else
  local in_use = rate_now(KEYS[1], max_rate, safety, now)
  if in_use ~= nil then
    learned = math.max(math.min(learned, in_use * safety), in_use * MAX_DECREASE)
  elseif accepted < LOWEST_PUBLISHED_PER_MIN then
    learned = nil
  else
    learned = math.max(learned, LOWEST_PUBLISHED_PER_MIN)
  end
end
hold = math.max(hold, previous)
local fields = {'hold_until', hold}
if learned then
  learned = math.max(1, learned)
  fields = {'hold_until', hold, 'learned', learned, 'last_429_at', now, 'rate_per_min', learned,
    'learned_max', max_rate, 'safety', safety}
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('ZADD', KEYS[3], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 86400)
redis.call('EXPIRE', KEYS[3], 86400)
return tostring(hold - now)
