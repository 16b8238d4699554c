-- The window's priced rollups into staged_rated_usage. The cost is exact: numeric products
-- add scales (tokens scale 0, rates scale 6, the factor 0.000001 scale 6: scale 12), and
-- there is no division (numeric division rounds to a computed scale).
-- Bound: %(window_start)s, %(window_end)s, %(pricebook_version)s, %(pricebook_sha256)s.
INSERT INTO staged_rated_usage (
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256
)
SELECT
    %(window_start)s,
    %(window_end)s,
    r.auth_id,
    r.model_id,
    r.event_count,
    r.input_tokens,
    r.output_tokens,
    s.rate_source,
    s.derivation_base,
    s.multiplier,
    s.input_rate_per_mtok,
    s.output_rate_per_mtok,
    (r.input_tokens * s.input_rate_per_mtok + r.output_tokens * s.output_rate_per_mtok)
        * 0.000001,
    %(pricebook_version)s,
    %(pricebook_sha256)s
FROM window_rollup AS r
JOIN window_resolution AS s USING (model_id, bases_key)
WHERE s.reason IS NULL
