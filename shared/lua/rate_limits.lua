-- include: layout.lua
-- include: rate.lua
-- What 429s left on the fleet's budgets (`segq status`): a budget_report (rate.lua) for each
-- budget a 429 reached in the last day whose hash is still there.
-- Returns the reports one after another, five entries each.
local reports = {}
for _, key in ipairs(redis.call('ZRANGE', K.rate_limited, 0, -1)) do
  if redis.call('EXISTS', key) == 1 then
    for _, value in ipairs(budget_report(key, NOW)) do reports[#reports + 1] = value end
  end
end
return reports
