-- Price ONE window's rollups, into the temp table window_output (dropped at commit): the
-- one place a rollup's cost is computed, exactly: the sum over token classes of tokens x
-- rate x 0.000001 (scale 12, no division). A rollup prices only if its rate set has a rate
-- for every class it has tokens of. An open window's rated_usage converges to these rows
-- (reconcile_rated_usage.sql); a closed window's open adjustments make up the difference
-- (reconcile_rating_adjustment.sql).
CREATE TEMP TABLE window_output ON COMMIT DROP AS
SELECT
    r.auth_id,
    r.model_id,
    r.service_tier,
    r.context_tier,
    r.event_count,
    r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
    r.cache_write_1h_tokens, r.reasoning_tokens, r.audio_input_tokens, r.audio_output_tokens,
    r.image_input_tokens,
    s.rate_source,
    s.derivation_base,
    s.multiplier,
    s.input_rate_per_mtok, s.output_rate_per_mtok, s.cache_read_rate_per_mtok,
    s.cache_write_rate_per_mtok, s.cache_write_1h_rate_per_mtok, s.reasoning_rate_per_mtok,
    s.audio_input_rate_per_mtok, s.audio_output_rate_per_mtok, s.image_input_rate_per_mtok,
    ((r.input_tokens * s.input_rate_per_mtok
        + r.output_tokens * s.output_rate_per_mtok
        + coalesce(r.cache_read_tokens * s.cache_read_rate_per_mtok, 0)
        + coalesce(r.cache_write_tokens * s.cache_write_rate_per_mtok, 0)
        + coalesce(r.cache_write_1h_tokens * s.cache_write_1h_rate_per_mtok, 0)
        + coalesce(r.reasoning_tokens * s.reasoning_rate_per_mtok, 0)
        + coalesce(r.audio_input_tokens * s.audio_input_rate_per_mtok, 0)
        + coalesce(r.audio_output_tokens * s.audio_output_rate_per_mtok, 0)
        + coalesce(r.image_input_tokens * s.image_input_rate_per_mtok, 0))
        * 0.000001)::numeric(50, 12) AS cost_usd
FROM window_sums AS r
JOIN window_resolution AS s USING (model_id, bases_key, service_tier, context_tier)
WHERE s.reason IS NULL
  AND (r.input_tokens = 0 OR s.input_rate_per_mtok IS NOT NULL)
  AND (r.output_tokens = 0 OR s.output_rate_per_mtok IS NOT NULL)
  AND (r.cache_read_tokens = 0 OR s.cache_read_rate_per_mtok IS NOT NULL)
  AND (r.cache_write_tokens = 0 OR s.cache_write_rate_per_mtok IS NOT NULL)
  AND (r.cache_write_1h_tokens = 0 OR s.cache_write_1h_rate_per_mtok IS NOT NULL)
  AND (r.reasoning_tokens = 0 OR s.reasoning_rate_per_mtok IS NOT NULL)
  AND (r.audio_input_tokens = 0 OR s.audio_input_rate_per_mtok IS NOT NULL)
  AND (r.audio_output_tokens = 0 OR s.audio_output_rate_per_mtok IS NOT NULL)
  AND (r.image_input_tokens = 0 OR s.image_input_rate_per_mtok IS NOT NULL)
