-- Merge the per-base rows of each rollup whose events carry several base_model values
-- (bases_key NULL after fill_window_sums.sql) into one row with the bases_key of them all:
-- a JSON array sorted by code point, null last. Reads window_sums only: same snapshot.
WITH parts AS (
    DELETE FROM window_sums
    WHERE problem_bits = 0 AND bases_key IS NULL
    RETURNING
        auth_id, model_id, base_model, event_count, input_tokens, output_tokens,
        max_ingested_at
)
INSERT INTO window_sums (
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
