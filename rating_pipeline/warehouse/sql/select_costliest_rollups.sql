-- The costliest rollups of ONE window as stored, costliest first, ties broken by key
-- (code point), as records.RatedRollup fields. Bound: %(window_start)s, %(limit)s. The
-- ranking reads only the key and the cost of each row; the winners are then read whole.
WITH costliest AS (
    SELECT auth_id, model_id, service_tier, context_tier
    FROM rated_usage
    WHERE window_start = %(window_start)s
    ORDER BY cost_usd DESC, auth_id COLLATE "C", model_id COLLATE "C",
        service_tier COLLATE "C", context_tier COLLATE "C"
    LIMIT %(limit)s
)
SELECT
    window_start, window_end, auth_id, model_id, service_tier, context_tier, event_count,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
    reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cache_read_rate_per_mtok, cache_write_rate_per_mtok, cache_write_1h_rate_per_mtok,
    reasoning_rate_per_mtok, audio_input_rate_per_mtok, audio_output_rate_per_mtok,
    image_input_rate_per_mtok, cost_usd, pricebook_version, pricebook_sha256
FROM rated_usage
JOIN costliest USING (auth_id, model_id, service_tier, context_tier)
WHERE window_start = %(window_start)s
ORDER BY cost_usd DESC, auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",
    context_tier COLLATE "C"
