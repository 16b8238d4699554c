-- The cost_reconstructs check, over the rated_usage rows of [%(start)s, %(end)s):
-- how many rows, their total cost, and how many fail cost_usd = (input_tokens x input rate
-- + output_tokens x output rate) / 1e6 (compared multiplied out: numeric division rounds).
SELECT
    count(*) AS rows_audited,
    count(*) FILTER (
        WHERE cost_usd * 1000000
            <> input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
    ) AS rows_not_reconstructing,
    coalesce(sum(cost_usd), 0) AS total_cost_usd
FROM rated_usage
WHERE window_start >= %(start)s AND window_start < %(end)s
