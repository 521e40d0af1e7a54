-- Fleet rate limiter functions, included by the scripts that spend or learn budget.
-- A budget is the hash segq:rate:{fingerprint}:{kind} with fields
--   tat          GCRA theoretical arrival time of the next slot (epoch s)
--   hold_until   nobody calls before this (a 429's window)
--   learned      requests/minute learned from the last 429 (absent: none learned)
--   last_429_at  when that was; the learned rate grows back from then
--   learned_max  the configured rate (0: none) it was learned under: a learned rate is
--                forgotten once a higher one is configured (the account's plan was raised)
--   safety       the SEGQ_RATE_SAFETY it was learned under, so status tells the rate the
--                workers spend at from the producer's side (budget_report)
--   rate_per_min the rate last used (for metrics and status)
-- and the zset segq:rate:{fingerprint}:{kind}:ok of calls accepted in the last minute, which
-- the learning reads. The zset segq:rate_limited names every budget a 429 reached in the last
-- day, for status and resume.

-- While answers are good a learned rate grows back: by at least 2% of itself a minute, and
-- with a configured rate by (minutes since the 429 / RECOVERY_MIN)^2 of the configured rate in
-- use, so from any low point it is back to that rate within RECOVERY_MIN minutes. Stray 429s
-- (another client spent the key's window once) then cost minutes, not hours. The curve starts
-- flat because a 429 leaves the learned rate just under what the key has room for: a straight
-- 10% a minute would be past it again seconds after each 429 when the key is truly shared with
-- a busy client, taking that client's share of a sliding window. (With 120 a minute configured
-- and 58.8 learned under a room of 60, the square passes 60 after about a minute.)
local RATE_GROWTH_PER_MIN = 0.02
local RECOVERY_MIN = 10
local RATE_TOLERANCE_S = 0.1       -- lateness of the dispatcher the limiter forgives
local RATE_WINDOW_S = 60

-- The learned rate grown back by now, or nil when none was learned (or it was learned under a
-- lower configured rate than max_rate).
local function learned_now(key, max_rate, safety, now)
  local learned, last429, learned_max =
    unpack(redis.call('HMGET', key, 'learned', 'last_429_at', 'learned_max'))
  if not learned or max_rate > (tonumber(learned_max) or 0) then return nil end
  learned = tonumber(learned)
  local minutes = (now - tonumber(last429)) / 60
  local grown = learned * (1 + RATE_GROWTH_PER_MIN * minutes)
  if max_rate > 0 then
    grown = math.max(grown, learned + max_rate * safety * (minutes / RECOVERY_MIN) ^ 2)
  end
  return grown
end

-- The rate (per minute) to spend at now, or nil when nothing limits it.
local function rate_now(key, max_rate, safety, now)
  local rate = nil
  if max_rate > 0 then rate = max_rate * safety end
  local learned = learned_now(key, max_rate, safety, now)
  if learned and (rate == nil or learned < rate) then rate = learned end
  return rate
end

-- What a 429 left on a budget, as `segq status` shows it: {key, hold_until, hold_left_s,
-- learned rate in use, configured rate}, '' for each that does not apply. The learned rate is
-- given only while it is below the configured rate in use (or nothing is configured).
local function budget_report(key, now)
  local hold, configured, safety = unpack(redis.call('HMGET', key, 'hold_until', 'learned_max',
    'safety'))
  hold, configured, safety = tonumber(hold) or 0, tonumber(configured) or 0, tonumber(safety) or 1
  local learned = learned_now(key, configured, safety, now)
  if learned and configured > 0 and learned >= configured * safety then learned = nil end
  local report = {key, '', '', learned and tostring(learned) or '', ''}
  if hold > now then report[2], report[3] = tostring(hold), tostring(hold - now) end
  if configured > 0 then report[5] = tostring(configured) end
  return report
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
