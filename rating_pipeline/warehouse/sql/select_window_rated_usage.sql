-- One window's billed rows, in key order, as records.RatedRollup fields.
SELECT
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256
FROM rated_usage
WHERE window_start = %(window_start)s
ORDER BY auth_id COLLATE "C", model_id COLLATE "C"
