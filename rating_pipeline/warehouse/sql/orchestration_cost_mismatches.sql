-- The first %(limit)s rated_usage rows of [%(start)s, %(end)s) whose cost does not
-- reconstruct from their own frozen rates and tokens of every class, with the cost they
-- should carry.
SELECT window_start, auth_id, model_id, cost_usd, reconstructed * 0.000001 AS reconstructed_cost_usd
FROM rated_usage
CROSS JOIN LATERAL (
    SELECT input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
        + coalesce(cache_read_tokens * cache_read_rate_per_mtok, 0)
        + coalesce(cache_write_tokens * cache_write_rate_per_mtok, 0)
        + coalesce(cache_write_1h_tokens * cache_write_1h_rate_per_mtok, 0)
        + coalesce(reasoning_tokens * reasoning_rate_per_mtok, 0)
        + coalesce(audio_input_tokens * audio_input_rate_per_mtok, 0)
        + coalesce(audio_output_tokens * audio_output_rate_per_mtok, 0)
        + coalesce(image_input_tokens * image_input_rate_per_mtok, 0) AS reconstructed
) AS cost
WHERE window_start >= %(start)s AND window_start < %(end)s
  AND cost_usd * 1000000 <> reconstructed
ORDER BY window_start, auth_id, model_id
LIMIT %(limit)s
