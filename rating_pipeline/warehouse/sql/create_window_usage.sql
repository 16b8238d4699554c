-- One window's events summed into the temp table window_usage, in one statement (one
-- snapshot: everything the rating knows of the window's events comes from it); nothing
-- crosses into Python.
--   every_event:     every event of the window per (auth_id, model_id, base_model), with
--                    the latest ingested_at: the floor's GROUP BY;
--   negative_tokens: only the events with negative tokens, per key and sign. They are few,
--                    and found through the partial index billing_event_negative_tokens_idx
--                    instead of a second scan (grouping on the signs in the main scan was
--                    measured ~15-25% slower on 2 cores);
--   kept:            per key, its total minus its negative events (a CASE spares the keys
--                    without any the numeric arithmetic); a remainder of zero is dropped;
--   shared:          the (auth_id, model_id) whose kept rows carry more than one
--                    base_model.
-- Rows: one per (auth_id, model_id, base_model, problem_bits). The valid rows
-- (problem_bits = 0) of an (auth_id, model_id) whose events all carry one base_model (or
-- none) are the window's rollups, with bases_key: the canonical text of their distinct
-- base_model values, a JSON array sorted by code point with null (a value) last. The few
-- rollups with several bases keep one row per base and a NULL bases_key here;
-- merge_mixed_bases.sql merges them from this table (no second read of the events). The
-- rules see the keys only (select_usage_groups); the reconcile joins their answers back
-- by (model_id, bases_key). Every row carries the latest ingested_at of its own events (a
-- kept row: of all its key's events), so max() over the table is the window's.
-- problem_bits (records.PROBLEM_BITS): 1 blank auth_id, 2 blank model_id,
-- 4 negative input_tokens, 8 negative output_tokens; blank = empty once the characters of
-- records.BLANK_CHARACTERS are trimmed. Sums of bigint are numeric: they cannot overflow.
-- Bound: %(start)s, %(end)s (the half-open window).
CREATE TEMP TABLE window_usage ON COMMIT DROP AS
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
        input_tokens < 0 AS negative_input,
        output_tokens < 0 AS negative_output,
        count(*) AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        max(ingested_at) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
      AND (input_tokens < 0 OR output_tokens < 0)
    GROUP BY auth_id, model_id, base_model, negative_input, negative_output
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
    GROUP BY auth_id, model_id
    HAVING count(*) > 1
)
SELECT
    k.auth_id,
    k.model_id,
    k.base_model,
    k.problem_bits,
    CASE WHEN k.problem_bits = 0 AND s.auth_id IS NULL
        THEN to_jsonb(ARRAY[k.base_model])::text END AS bases_key,
    k.event_count,
    k.input_tokens,
    k.output_tokens,
    k.max_ingested_at
FROM kept AS k
LEFT JOIN shared AS s
    ON s.auth_id = k.auth_id
    AND s.model_id = k.model_id
UNION ALL
SELECT
    auth_id,
    model_id,
    base_model,
    (CASE WHEN btrim(auth_id, E' \t\n\r\f\v') = '' THEN 1 ELSE 0 END
        | CASE WHEN btrim(model_id, E' \t\n\r\f\v') = '' THEN 2 ELSE 0 END
        | CASE WHEN negative_input THEN 4 ELSE 0 END
        | CASE WHEN negative_output THEN 8 ELSE 0 END) AS problem_bits,
    NULL,
    event_count::bigint,
    input_tokens,
    output_tokens,
    max_ingested_at
FROM negative_tokens
