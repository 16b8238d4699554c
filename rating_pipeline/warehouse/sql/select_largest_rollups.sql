-- The rollups of ONE window with the given keys (reconcile_rated_usage names the costliest),
-- costliest first, ties broken by key (code point).
-- Bound: %(window_start)s, %(auth_ids)s, %(model_ids)s (text arrays, pairwise).
SELECT
    live.window_start, live.window_end, live.auth_id, live.model_id, live.event_count,
    live.input_tokens, live.output_tokens, live.rate_source, live.derivation_base,
    live.multiplier, live.input_rate_per_mtok, live.output_rate_per_mtok, live.cost_usd,
    live.pricebook_version, live.pricebook_sha256
FROM unnest(%(auth_ids)s::text[], %(model_ids)s::text[]) AS wanted (auth_id, model_id)
JOIN rated_usage AS live
    ON live.window_start = %(window_start)s
    AND live.auth_id = wanted.auth_id
    AND live.model_id = wanted.model_id
ORDER BY live.cost_usd DESC, live.auth_id COLLATE "C", live.model_id COLLATE "C"
