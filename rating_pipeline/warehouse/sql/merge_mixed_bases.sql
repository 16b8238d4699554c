-- Merge the per-base rows of the rollups whose events carry several base_model values
-- (bases_key left NULL by fill_window_usage.sql) into one row each, with the canonical
-- bases_key of fill_window_usage.sql. Reads window_usage only, so the bases come from the
-- same snapshot as the sums. The engine runs it only when such rollups exist
-- (multi_base_rollups of fill_window_usage.sql); left unmerged, their rows would join no
-- resolution and fail the conservation check, never bill part of a rollup.
WITH parts AS (
    DELETE FROM window_usage
    WHERE problem_bits = 0 AND bases_key IS NULL
    RETURNING
        auth_id, model_id, base_model, event_count, input_tokens, output_tokens,
        max_ingested_at
)
INSERT INTO window_usage (
    auth_id, model_id, base_model, problem_bits, bases_key, event_count, input_tokens,
    output_tokens, max_ingested_at
)
SELECT
    auth_id,
    model_id,
    NULL,
    0,
    to_jsonb(array_agg(base_model ORDER BY base_model COLLATE "C"))::text,
    sum(event_count)::bigint,
    sum(input_tokens),
    sum(output_tokens),
    max(max_ingested_at)
FROM parts
GROUP BY auth_id, model_id
