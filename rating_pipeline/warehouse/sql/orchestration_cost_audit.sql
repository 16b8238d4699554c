-- The cost_reconstructs check, over the rated_usage rows of [%(start)s, %(end)s): how many
-- rows, their total cost, and how many fail cost_usd = the sum over token classes of
-- tokens x frozen rate / 1e6 (compared multiplied out: numeric division rounds). A class
-- without tokens adds nothing; one with tokens and no rate makes the sum NULL: no
-- reconstruction. The same form as orchestration_cost_mismatches.sql, which lists them.
WITH audited AS (
    SELECT
        cost_usd,
        input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
            + CASE WHEN cache_read_tokens = 0 THEN 0
                ELSE cache_read_tokens * cache_read_rate_per_mtok END
            + CASE WHEN cache_write_tokens = 0 THEN 0
                ELSE cache_write_tokens * cache_write_rate_per_mtok END
            + CASE WHEN cache_write_1h_tokens = 0 THEN 0
                ELSE cache_write_1h_tokens * cache_write_1h_rate_per_mtok END
            + CASE WHEN reasoning_tokens = 0 THEN 0
                ELSE reasoning_tokens * reasoning_rate_per_mtok END
            + CASE WHEN audio_input_tokens = 0 THEN 0
                ELSE audio_input_tokens * audio_input_rate_per_mtok END
            + CASE WHEN audio_output_tokens = 0 THEN 0
                ELSE audio_output_tokens * audio_output_rate_per_mtok END
            + CASE WHEN image_input_tokens = 0 THEN 0
                ELSE image_input_tokens * image_input_rate_per_mtok END AS cost_times_1e6
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
)
SELECT
    count(*) AS rows_audited,
    count(*) FILTER (WHERE cost_times_1e6 IS NULL OR cost_usd * 1000000 <> cost_times_1e6)
        AS rows_not_reconstructing,
    coalesce(sum(cost_usd), 0) AS total_cost_usd
FROM audited
