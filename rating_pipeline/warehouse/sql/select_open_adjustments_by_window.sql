-- The windows with open adjustments (not yet stamped by a close), with their count, cost
-- and the month they bill on, in window order.
SELECT window_start, count(*) AS adjustments, sum(cost_usd) AS cost_usd, min(bill_month)
FROM rating_adjustment
WHERE invoiced_by IS NULL
GROUP BY window_start
ORDER BY window_start
