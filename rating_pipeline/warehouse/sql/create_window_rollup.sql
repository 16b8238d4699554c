-- The window's VALID usage (problem_bits = 0) summed per (auth_id, model_id), into the temp
-- table window_rollup, with bases_key: the canonical text of the rollup's distinct
-- base_model values, a JSON array sorted by code point with null (a value) last. The rules
-- see these keys only (select_resolution_keys); staging joins their answers back by
-- (model_id, bases_key). The valid rows of window_usage are already one per (auth_id,
-- model_id, base_model), so array_agg needs no DISTINCT.
CREATE TEMP TABLE window_rollup ON COMMIT DROP AS
SELECT
    auth_id,
    model_id,
    to_jsonb(array_agg(base_model ORDER BY base_model COLLATE "C"))::text AS bases_key,
    sum(event_count)::bigint AS event_count,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens
FROM window_usage
WHERE problem_bits = 0
GROUP BY auth_id, model_id
