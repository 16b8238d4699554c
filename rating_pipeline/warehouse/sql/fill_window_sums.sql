-- Sum one window's events into a new temp table window_sums, one row per (auth_id, model_id,
-- base_model, service tier, context tier, problem_bits), each column cast to its type (the
-- events digest hashes them); a CREATE TABLE AS, the one write planned in parallel.
-- An event is long-context when its prompt exceeds its model's threshold: a listed model's
-- in %(listed_models)s, an unlisted fine-tune's by its base in %(event_bases)s (with
-- neither, the planner folds the test to false). Invalid events keep their problem_bits
-- (records.PROBLEMS) and come through the partial index of revision 0012, but for a 'NaN'
-- count: only with %(nan_counts)s (else folded away) is it a problem, summed as nothing.
-- Also bound: %(start)s, %(end)s, %(listed_thresholds)s, %(base_thresholds)s,
-- %(fine_tune_prefix)s, %(service_tiers)s, %(blank_characters)s, %(max_id_length)s.
CREATE TEMP TABLE window_sums (
    auth_id, model_id, base_model, service_tier, context_tier, problem_bits, bases_key,
    event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
    image_input_tokens, max_ingested_at  -- null when upstream left every ingested_at null
) ON COMMIT DROP AS
WITH listed AS (
    SELECT * FROM unnest(%(listed_models)s::text[], %(listed_thresholds)s::bigint[])
        AS listed (model_id, above)
),
bases AS (
    SELECT * FROM unnest(%(event_bases)s::text[], %(base_thresholds)s::bigint[])
        AS bases (base_model, above)
),
events AS NOT MATERIALIZED (
    -- Ids and tiers as the warehouse's text whatever upstream's types (a number, an enum)
    -- and collation (a case-insensitive one would merge org-a and ORG-A): byte for byte.
    SELECT
        auth_id::text COLLATE "default" AS auth_id,
        model_id::text COLLATE "default" AS model_id,
        base_model::text COLLATE "default" AS base_model,
        service_tier::text COLLATE "default" AS service_tier,
        input_tokens, output_tokens, cache_read_tokens,
        cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, audio_input_tokens,
        audio_output_tokens, image_input_tokens, occurred_at, ingested_at
    FROM billing_event
),
thresholded AS NOT MATERIALIZED (
    SELECT
        e.*,
        coalesce(e.service_tier, 'standard') AS tier,
        CASE
            WHEN l.model_id IS NOT NULL THEN l.above
            WHEN starts_with(e.model_id, %(fine_tune_prefix)s) THEN b.above
        END AS above
    FROM events AS e
    LEFT JOIN listed AS l ON l.model_id = e.model_id
    LEFT JOIN bases AS b ON b.base_model = e.base_model
    WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
),
classified AS NOT MATERIALIZED (
    SELECT
        *,
        CASE
            WHEN cardinality(%(listed_models)s::text[]) + cardinality(%(event_bases)s::text[])
                = 0 THEN false
            WHEN above IS NULL THEN false
            ELSE above < input_tokens::numeric + cache_read_tokens + cache_write_tokens
                + cache_write_1h_tokens + audio_input_tokens + image_input_tokens
        END AS long_context,
        -- x * 0 is 0 for every count but 'NaN' (and null).
        NOT %(nan_counts)s OR (input_tokens * 0 = 0 AND output_tokens * 0 = 0
            AND cache_read_tokens * 0 = 0 AND cache_write_tokens * 0 = 0
            AND cache_write_1h_tokens * 0 = 0 AND reasoning_tokens * 0 = 0
            AND audio_input_tokens * 0 = 0 AND audio_output_tokens * 0 = 0
            AND image_input_tokens * 0 = 0) AS countable
    FROM thresholded
),
nonnegative AS (
    SELECT
        auth_id, model_id, base_model, tier, long_context,
        count(*) AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(cache_read_tokens) AS cache_read_tokens,
        sum(cache_write_tokens) AS cache_write_tokens,
        sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
        sum(reasoning_tokens) AS reasoning_tokens,
        sum(audio_input_tokens) AS audio_input_tokens,
        sum(audio_output_tokens) AS audio_output_tokens,
        sum(image_input_tokens) AS image_input_tokens,
        max(ingested_at) FILTER (
            WHERE ingested_at >= '0001-01-01 00:00Z' AND ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM classified
    WHERE input_tokens >= 0 AND output_tokens >= 0 AND cache_read_tokens >= 0
        AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0 AND reasoning_tokens >= 0
        AND audio_input_tokens >= 0 AND audio_output_tokens >= 0 AND image_input_tokens >= 0
        AND countable
    GROUP BY auth_id, model_id, base_model, tier, long_context
),
miscounted AS (
    SELECT
        auth_id, model_id, base_model, tier, long_context,
        (CASE WHEN input_tokens < 0 THEN 64 ELSE 0 END
            | CASE WHEN output_tokens < 0 THEN 128 ELSE 0 END
            | CASE WHEN cache_read_tokens < 0 THEN 256 ELSE 0 END
            | CASE WHEN cache_write_tokens < 0 THEN 512 ELSE 0 END
            | CASE WHEN cache_write_1h_tokens < 0 THEN 1024 ELSE 0 END
            | CASE WHEN reasoning_tokens < 0 THEN 2048 ELSE 0 END
            | CASE WHEN audio_input_tokens < 0 THEN 4096 ELSE 0 END
            | CASE WHEN audio_output_tokens < 0 THEN 8192 ELSE 0 END
            | CASE WHEN image_input_tokens < 0 THEN 16384 ELSE 0 END
            | CASE WHEN input_tokens IS NULL THEN 32768 ELSE 0 END
            | CASE WHEN output_tokens IS NULL THEN 65536 ELSE 0 END
            | CASE WHEN cache_read_tokens IS NULL THEN 131072 ELSE 0 END
            | CASE WHEN cache_write_tokens IS NULL THEN 262144 ELSE 0 END
            | CASE WHEN cache_write_1h_tokens IS NULL THEN 524288 ELSE 0 END
            | CASE WHEN reasoning_tokens IS NULL THEN 1048576 ELSE 0 END
            | CASE WHEN audio_input_tokens IS NULL THEN 2097152 ELSE 0 END
            | CASE WHEN audio_output_tokens IS NULL THEN 4194304 ELSE 0 END
            | CASE WHEN image_input_tokens IS NULL THEN 8388608 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND input_tokens * 0 <> 0
                THEN 16777216 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND output_tokens * 0 <> 0
                THEN 33554432 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND cache_read_tokens * 0 <> 0
                THEN 67108864 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND cache_write_tokens * 0 <> 0
                THEN 134217728 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND cache_write_1h_tokens * 0 <> 0
                THEN 268435456 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND reasoning_tokens * 0 <> 0
                THEN 536870912 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND audio_input_tokens * 0 <> 0
                THEN 1073741824 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND audio_output_tokens * 0 <> 0
                THEN 2147483648 ELSE 0 END
            | CASE WHEN %(nan_counts)s AND image_input_tokens * 0 <> 0
                THEN 4294967296 ELSE 0 END)
            AS count_bits,
        count(*) AS event_count,
        coalesce(sum(input_tokens)
            FILTER (WHERE countable OR input_tokens * 0 = 0), 0) AS input_tokens,
        coalesce(sum(output_tokens)
            FILTER (WHERE countable OR output_tokens * 0 = 0), 0) AS output_tokens,
        coalesce(sum(cache_read_tokens)
            FILTER (WHERE countable OR cache_read_tokens * 0 = 0), 0) AS cache_read_tokens,
        coalesce(sum(cache_write_tokens)
            FILTER (WHERE countable OR cache_write_tokens * 0 = 0), 0) AS cache_write_tokens,
        coalesce(sum(cache_write_1h_tokens)
            FILTER (WHERE countable OR cache_write_1h_tokens * 0 = 0), 0) AS cache_write_1h_tokens,
        coalesce(sum(reasoning_tokens)
            FILTER (WHERE countable OR reasoning_tokens * 0 = 0), 0) AS reasoning_tokens,
        coalesce(sum(audio_input_tokens)
            FILTER (WHERE countable OR audio_input_tokens * 0 = 0), 0) AS audio_input_tokens,
        coalesce(sum(audio_output_tokens)
            FILTER (WHERE countable OR audio_output_tokens * 0 = 0), 0) AS audio_output_tokens,
        coalesce(sum(image_input_tokens)
            FILTER (WHERE countable OR image_input_tokens * 0 = 0), 0) AS image_input_tokens,
        max(ingested_at) FILTER (
            WHERE ingested_at >= '0001-01-01 00:00Z' AND ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM classified
    WHERE (input_tokens >= 0 AND output_tokens >= 0 AND cache_read_tokens >= 0
        AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0 AND reasoning_tokens >= 0
        AND audio_input_tokens >= 0 AND audio_output_tokens >= 0 AND image_input_tokens >= 0
        AND countable) IS NOT TRUE
    GROUP BY auth_id, model_id, base_model, tier, long_context, 6
),
sums AS (
    SELECT
        auth_id, model_id, base_model, tier, long_context, 0 AS count_bits, event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
        image_input_tokens, max_ingested_at
    FROM nonnegative
    UNION ALL
    SELECT * FROM miscounted
),
flagged AS (
    SELECT
        coalesce(auth_id, '') AS auth_id, coalesce(model_id, '') AS model_id, base_model,
        tier AS service_tier,
        CASE WHEN long_context THEN 'long' ELSE 'standard' END AS context_tier,
        count_bits
            | CASE WHEN (btrim(auth_id, %(blank_characters)s) = '') IS NOT FALSE THEN 1 ELSE 0 END
            | CASE WHEN (btrim(model_id, %(blank_characters)s) = '') IS NOT FALSE THEN 2 ELSE 0 END
            | CASE WHEN char_length(auth_id) > %(max_id_length)s THEN 4 ELSE 0 END
            | CASE WHEN char_length(model_id) > %(max_id_length)s THEN 8 ELSE 0 END
            | CASE WHEN char_length(base_model) > %(max_id_length)s THEN 16 ELSE 0 END
            | CASE WHEN tier = ANY (%(service_tiers)s::text[]) THEN 0 ELSE 32 END
            AS problem_bits,
        event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
        image_input_tokens, max_ingested_at
    FROM sums
)
SELECT
    auth_id::text, model_id::text, base_model::text, service_tier::text, context_tier::text,
    problem_bits::bigint,
    (CASE WHEN problem_bits = 0 THEN '[' || coalesce(to_json(base_model)::text, 'null') || ']'
        END)::text,
    event_count::bigint, input_tokens::numeric, output_tokens::numeric,
    cache_read_tokens::numeric, cache_write_tokens::numeric, cache_write_1h_tokens::numeric,
    reasoning_tokens::numeric, audio_input_tokens::numeric, audio_output_tokens::numeric,
    image_input_tokens::numeric, max_ingested_at::timestamptz
FROM flagged
