-- The costliest rollups of ONE window as stored, costliest first, ties broken by key
-- (code point). Bound: %(window_start)s, %(limit)s.
SELECT
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256
FROM rated_usage
WHERE window_start = %(window_start)s
ORDER BY cost_usd DESC, auth_id COLLATE "C", model_id COLLATE "C"
LIMIT %(limit)s
