-- The cost_reconstructs check, over the rated_usage rows of [%(start)s, %(end)s): how many
-- rows, their total cost, and how many fail cost_usd = the sum over token classes of
-- tokens x frozen rate / 1e6 (compared multiplied out: numeric division rounds). A class
-- without a rate adds nothing; a class with tokens and no rate cannot reconstruct.
WITH audited AS (
    SELECT
        cost_usd,
        input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
            + coalesce(cache_read_tokens * cache_read_rate_per_mtok, 0)
            + coalesce(cache_write_tokens * cache_write_rate_per_mtok, 0)
            + coalesce(cache_write_1h_tokens * cache_write_1h_rate_per_mtok, 0)
            + coalesce(reasoning_tokens * reasoning_rate_per_mtok, 0)
            + coalesce(audio_input_tokens * audio_input_rate_per_mtok, 0)
            + coalesce(audio_output_tokens * audio_output_rate_per_mtok, 0)
            + coalesce(image_input_tokens * image_input_rate_per_mtok, 0) AS cost_times_1e6,
        (cache_read_tokens = 0 OR cache_read_rate_per_mtok IS NOT NULL)
            AND (cache_write_tokens = 0 OR cache_write_rate_per_mtok IS NOT NULL)
            AND (cache_write_1h_tokens = 0 OR cache_write_1h_rate_per_mtok IS NOT NULL)
            AND (reasoning_tokens = 0 OR reasoning_rate_per_mtok IS NOT NULL)
            AND (audio_input_tokens = 0 OR audio_input_rate_per_mtok IS NOT NULL)
            AND (audio_output_tokens = 0 OR audio_output_rate_per_mtok IS NOT NULL)
            AND (image_input_tokens = 0 OR image_input_rate_per_mtok IS NOT NULL) AS rated
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
)
SELECT
    count(*) AS rows_audited,
    count(*) FILTER (WHERE cost_usd * 1000000 <> cost_times_1e6 OR NOT rated)
        AS rows_not_reconstructing,
    coalesce(sum(cost_usd), 0) AS total_cost_usd
FROM audited
