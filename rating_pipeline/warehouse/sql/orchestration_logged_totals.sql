-- The rated windows of [%(start)s, %(end)s) whose rated_usage total differs from the total
-- cost their latest rating logged. rating_log_window_start_idx serves the DISTINCT ON.
WITH latest AS (
    SELECT DISTINCT ON (window_start) window_start, total_cost_usd
    FROM rating_log
    WHERE window_start >= %(start)s AND window_start < %(end)s
    ORDER BY window_start, log_id DESC
),
billed AS (
    SELECT window_start, sum(cost_usd) AS total_cost_usd
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
    GROUP BY window_start
)
SELECT
    latest.window_start,
    latest.total_cost_usd AS logged_cost_usd,
    coalesce(billed.total_cost_usd, 0) AS billed_cost_usd
FROM latest
LEFT JOIN billed ON billed.window_start = latest.window_start
WHERE latest.total_cost_usd <> coalesce(billed.total_cost_usd, 0)
ORDER BY latest.window_start
