-- The first %(limit)s rated_usage rows of [%(start)s, %(end)s) whose cost does not
-- reconstruct from their own frozen rates and tokens (as orchestration_cost_audit.sql
-- judges it, in the same form), with the cost they should carry (NULL where a class with
-- tokens has no rate).
WITH audited AS (
    SELECT
        window_start,
        auth_id,
        model_id,
        service_tier,
        context_tier,
        cost_usd,
        (input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
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
                ELSE image_input_tokens * image_input_rate_per_mtok END) AS cost_times_1e6
    FROM rated_usage
    WHERE window_start >= %(start)s AND window_start < %(end)s
)
SELECT
    window_start, auth_id, model_id, service_tier, context_tier, cost_usd,
    cost_times_1e6 * 0.000001 AS reconstructed_cost_usd
FROM audited
WHERE cost_times_1e6 IS NULL OR cost_usd * 1000000 <> cost_times_1e6
ORDER BY window_start, auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
    context_tier COLLATE "C"
LIMIT %(limit)s
