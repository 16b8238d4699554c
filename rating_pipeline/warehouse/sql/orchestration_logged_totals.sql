-- The windows of [%(start)s, %(end)s) whose billed output differs from the total cost their
-- latest rating logged, or that bill with no rating logged (logged_cost_usd null). A
-- window's billed output is its rated_usage rows plus, once closed, every rating_adjustment
-- row of it, stamped and open (contract 10); an open window has none.
-- rating_log_window_start_idx serves the DISTINCT ON.
WITH latest AS (
    SELECT DISTINCT ON (window_start) window_start, total_cost_usd
    FROM rating_log
    WHERE window_start >= %(start)s AND window_start < %(end)s
    ORDER BY window_start, log_id DESC
),
output AS (
    SELECT window_start, cost_usd
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
    UNION ALL
    SELECT window_start, cost_usd
    FROM rating_adjustment
    WHERE window_start >= %(start)s AND window_start < %(end)s
),
billed AS (
    SELECT window_start, sum(cost_usd) AS total_cost_usd
    FROM output
    GROUP BY window_start
)
SELECT
    coalesce(latest.window_start, billed.window_start) AS window_start,
    latest.total_cost_usd AS logged_cost_usd,
    coalesce(billed.total_cost_usd, 0) AS billed_cost_usd
FROM latest
FULL JOIN billed ON billed.window_start = latest.window_start
WHERE latest.total_cost_usd IS DISTINCT FROM coalesce(billed.total_cost_usd, 0)
ORDER BY 1
