-- Merge the rows of each rollup whose (auth_id, model_id) carries several base_model
-- values into one row per service and context tier, with the bases_key of the pair: its
-- distinct bases as a JSON array sorted by code point, null last. Reads window_sums only:
-- the same snapshot as the sums. Run when some model's rows carry several bases.
WITH several AS (
    SELECT auth_id, model_id
    FROM window_sums
    WHERE problem_bits = 0
    GROUP BY auth_id, model_id
    HAVING min(base_model) IS DISTINCT FROM max(base_model)
        OR (bool_or(base_model IS NULL) AND bool_or(base_model IS NOT NULL))
),
parts AS (
    DELETE FROM window_sums
    USING several
    WHERE window_sums.problem_bits = 0
        AND window_sums.auth_id = several.auth_id
        AND window_sums.model_id = several.model_id
    RETURNING window_sums.*
),
pair AS (
    SELECT
        auth_id,
        model_id,
        to_jsonb(array_agg(DISTINCT base_model COLLATE "C" ORDER BY base_model COLLATE "C"))::text
            AS bases_key
    FROM parts
    GROUP BY auth_id, model_id
)
INSERT INTO window_sums (
    auth_id, model_id, base_model, service_tier, context_tier, problem_bits, bases_key,
    event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
    image_input_tokens, max_ingested_at
)
SELECT
    parts.auth_id, parts.model_id, NULL, parts.service_tier, parts.context_tier, 0,
    pair.bases_key, sum(event_count)::bigint, sum(input_tokens), sum(output_tokens),
    sum(cache_read_tokens), sum(cache_write_tokens), sum(cache_write_1h_tokens),
    sum(reasoning_tokens), sum(audio_input_tokens), sum(audio_output_tokens),
    sum(image_input_tokens), max(max_ingested_at)
FROM parts
JOIN pair USING (auth_id, model_id)
GROUP BY parts.auth_id, parts.model_id, parts.service_tier, parts.context_tier, pair.bases_key
