-- Sum one window's events into window_sums and return what was read: the events digest,
-- the totals every output must account for, the latest ingested_at, and how many rollups
-- carry several bases (merge_mixed_bases.sql merges those). One statement, one snapshot.
-- Invalid events are split off by problem_bits (records.PROBLEM_BITS); negative-token
-- events through the partial index of revision 0003. A valid row's bases_key is its one
-- base as a JSON array; NULL for rollups with several bases, until merged.
-- Bound: %(start)s, %(end)s (the half-open window). docs/warehouse.md explains each step.
WITH every_event AS (
    SELECT
        auth_id,
        model_id,
        base_model,
        count(*) AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        max(ingested_at) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
    GROUP BY auth_id, model_id, base_model
),
negative_tokens AS (
    SELECT
        auth_id,
        model_id,
        base_model,
        (CASE WHEN btrim(auth_id, E' \t\n\r\f\v') = '' THEN 1 ELSE 0 END
            | CASE WHEN btrim(model_id, E' \t\n\r\f\v') = '' THEN 2 ELSE 0 END
            | CASE WHEN input_tokens < 0 THEN 4 ELSE 0 END
            | CASE WHEN output_tokens < 0 THEN 8 ELSE 0 END) AS problem_bits,
        count(*) AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        max(ingested_at) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
      AND (input_tokens < 0 OR output_tokens < 0)
    GROUP BY auth_id, model_id, base_model, input_tokens < 0, output_tokens < 0
),
negative_per_key AS (
    SELECT
        auth_id,
        model_id,
        base_model,
        sum(event_count)::bigint AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens
    FROM negative_tokens
    GROUP BY auth_id, model_id, base_model
),
kept AS MATERIALIZED (
    SELECT
        e.auth_id,
        e.model_id,
        e.base_model,
        (CASE WHEN btrim(e.auth_id, E' \t\n\r\f\v') = '' THEN 1 ELSE 0 END
            | CASE WHEN btrim(e.model_id, E' \t\n\r\f\v') = '' THEN 2 ELSE 0 END)
            AS problem_bits,
        CASE WHEN n.auth_id IS NULL THEN e.event_count
            ELSE e.event_count - n.event_count END AS event_count,
        CASE WHEN n.auth_id IS NULL THEN e.input_tokens
            ELSE e.input_tokens - n.input_tokens END AS input_tokens,
        CASE WHEN n.auth_id IS NULL THEN e.output_tokens
            ELSE e.output_tokens - n.output_tokens END AS output_tokens,
        e.max_ingested_at
    FROM every_event AS e
    LEFT JOIN negative_per_key AS n
        ON n.auth_id = e.auth_id
        AND n.model_id = e.model_id
        AND n.base_model IS NOT DISTINCT FROM e.base_model
    WHERE n.auth_id IS NULL OR e.event_count > n.event_count
),
shared AS (
    SELECT auth_id, model_id
    FROM kept
    WHERE problem_bits = 0
    GROUP BY auth_id, model_id
    HAVING count(*) > 1
),
written AS (
    INSERT INTO window_sums (
        auth_id, model_id, base_model, problem_bits, bases_key, event_count, input_tokens,
        output_tokens, max_ingested_at
    )
    SELECT
        auth_id,
        model_id,
        base_model,
        problem_bits,
        CASE WHEN problem_bits = 0 AND (auth_id, model_id) NOT IN (SELECT * FROM shared)
            THEN to_jsonb(ARRAY[base_model])::text END,
        event_count,
        input_tokens,
        output_tokens,
        max_ingested_at
    FROM (SELECT * FROM kept UNION ALL SELECT * FROM negative_tokens) AS sums
    RETURNING *
)
SELECT
    concat_ws(
        ':', count(*), coalesce(sum(event_count), 0), sum(hashtextextended(line, 1)),
        sum(hashtextextended(line, 2))
    ) AS events_digest,
    coalesce(sum(event_count), 0) AS event_count,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    max(max_ingested_at) AS max_ingested_at,
    (SELECT count(*) FROM shared) AS multi_base_rollups
FROM (
    SELECT
        concat(
            octet_length(auth_id), ':', auth_id, ' ',
            octet_length(model_id), ':', model_id, ' ',
            octet_length(base_model), ':', base_model, ' ',
            problem_bits, ' ', event_count, ' ', input_tokens, ' ', output_tokens
        ) AS line,
        event_count,
        input_tokens,
        output_tokens,
        max_ingested_at
    FROM written
) AS rendered
