-- Fleet rate limiter functions, included by the scripts that spend or learn budget.
-- A budget is the hash segq:rate:{fingerprint}:{kind} with fields
--   tat          GCRA theoretical arrival time of the next slot (epoch s)
--   hold_until   nobody calls before this (a 429's window)
--   learned      requests/minute learned from the last 429 (absent: none learned)
--   last_429_at  when that was; the learned rate grows back from then
--   learned_max  the configured rate (0: none) it was learned under: a learned rate is
--                forgotten once a higher one is configured (the account's plan was raised)
--   rate_per_min the rate last used (for metrics and status)
-- and the zset segq:rate:{fingerprint}:{kind}:ok of calls accepted in the last minute, which
-- the learning reads.

local RATE_GROWTH_PER_MIN = 0.02   -- learned rate grows 2% a minute while answers are good
local RATE_TOLERANCE_S = 0.1       -- lateness of the dispatcher the limiter forgives
local RATE_WINDOW_S = 60

-- The rate (per minute) to spend at now, or nil when nothing limits it.
local function rate_now(key, max_rate, safety, now)
  local learned, last429, learned_max =
    unpack(redis.call('HMGET', key, 'learned', 'last_429_at', 'learned_max'))
  local rate = nil
  if max_rate > 0 then rate = max_rate * safety end
  if learned and max_rate > (tonumber(learned_max) or 0) then learned = nil end
  if learned then
    local grown = tonumber(learned) * (1 + RATE_GROWTH_PER_MIN * (now - tonumber(last429)) / 60)
    if rate == nil or grown < rate then rate = grown end
  end
  return rate
end

-- When the next slot opens (<= now means one is open now).
local function next_slot_at(key, rate, now)
  local tat, hold = unpack(redis.call('HMGET', key, 'tat', 'hold_until'))
  local at = math.max(tonumber(hold) or 0, now - RATE_TOLERANCE_S)
  if rate ~= nil then at = math.max(at, tonumber(tat) or 0) end
  return at
end

-- Spends the slot opening at slot_at.
local function spend_slot(key, rate, slot_at)
  if rate == nil then return end
  redis.call('HSET', key, 'tat', slot_at + 60 / rate, 'rate_per_min', rate)
  redis.call('EXPIRE', key, 86400)
end

local function record_accepted(ok_key, now, member)
  redis.call('ZADD', ok_key, now, member)
  redis.call('ZREMRANGEBYSCORE', ok_key, '-inf', now - RATE_WINDOW_S)
  redis.call('EXPIRE', ok_key, 2 * RATE_WINDOW_S)
end
