-- The cost_reconstructs check, over the rated_usage rows of [%(start)s, %(end)s):
-- how many rows, their total cost, and how many fail cost_usd = (the sum over token classes
-- of class tokens x class rate) / 1e6 (compared multiplied out: numeric division rounds). A
-- class without a rate adds nothing (its tokens are 0 on a stored row).
SELECT
    count(*) AS rows_audited,
    count(*) FILTER (
        WHERE cost_usd * 1000000
            <> input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
                + coalesce(cache_read_tokens * cache_read_rate_per_mtok, 0)
                + coalesce(cache_write_tokens * cache_write_rate_per_mtok, 0)
                + coalesce(cache_write_1h_tokens * cache_write_1h_rate_per_mtok, 0)
                + coalesce(reasoning_tokens * reasoning_rate_per_mtok, 0)
                + coalesce(audio_input_tokens * audio_input_rate_per_mtok, 0)
                + coalesce(audio_output_tokens * audio_output_rate_per_mtok, 0)
                + coalesce(image_input_tokens * image_input_rate_per_mtok, 0)
    ) AS rows_not_reconstructing,
    coalesce(sum(cost_usd), 0) AS total_cost_usd
FROM rated_usage
WHERE window_start >= %(start)s AND window_start < %(end)s
