-- One window's events summed per (auth_id, model_id, problem_bits) into the temp table
-- window_usage, in one statement (one snapshot); nothing crosses into Python. The valid rows
-- (problem_bits = 0) are the window's rollups.
--   every_event:     every event of the window per (auth_id, model_id), with the latest
--                    ingested_at and what is needed to name the rollup's distinct
--                    base_model values without grouping on them: how many events carry
--                    one, and the lowest and highest (code point);
--   negative_tokens: only the events with negative tokens, per key and sign. They are few,
--                    and found through the partial index billing_event_negative_tokens_idx
--                    instead of a second scan (grouping on the signs in the main scan was
--                    measured ~15-25% slower on 2 cores).
-- A key's valid (or blank-id-only) row is its total minus its negative rows; a remainder of
-- zero events is dropped. Every row carries the latest ingested_at of its own events (a
-- remainder row: of all its key's events), so max() over the table is the window's.
-- bases_key (valid rows only) is the canonical text of the rollup's distinct base_model
-- values, a JSON array sorted by code point with null (a value) last: the rules see these
-- keys only (select_resolution_keys), and the reconcile joins their answers back by
-- (model_id, bases_key). When every event of the key carries the same base_model (or none
-- does) it is that one value; otherwise it is left NULL here and fill_mixed_bases.sql
-- computes it from the valid events themselves.
-- problem_bits (records.PROBLEM_BITS): 1 blank auth_id, 2 blank model_id,
-- 4 negative input_tokens, 8 negative output_tokens; blank = empty once the characters of
-- records.BLANK_CHARACTERS are trimmed. Sums of bigint are numeric: they cannot overflow.
-- Bound: %(start)s, %(end)s (the half-open window).
CREATE TEMP TABLE window_usage ON COMMIT DROP AS
WITH every_event AS (
    SELECT
        auth_id,
        model_id,
        count(*) AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        max(ingested_at) AS max_ingested_at,
        count(base_model) AS based_count,
        min(base_model COLLATE "C") AS lowest_base,
        max(base_model COLLATE "C") AS highest_base
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
    GROUP BY auth_id, model_id
),
negative_tokens AS (
    SELECT
        auth_id,
        model_id,
        input_tokens < 0 AS negative_input,
        output_tokens < 0 AS negative_output,
        count(*) AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        max(ingested_at) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
      AND (input_tokens < 0 OR output_tokens < 0)
    GROUP BY auth_id, model_id, negative_input, negative_output
),
negative_per_key AS (
    SELECT
        auth_id,
        model_id,
        sum(event_count)::bigint AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens
    FROM negative_tokens
    GROUP BY auth_id, model_id
),
remainder AS (
    SELECT
        e.auth_id,
        e.model_id,
        (CASE WHEN btrim(e.auth_id, E' \t\n\r\f\v') = '' THEN 1 ELSE 0 END
            | CASE WHEN btrim(e.model_id, E' \t\n\r\f\v') = '' THEN 2 ELSE 0 END)
            AS problem_bits,
        CASE
            WHEN e.lowest_base IS DISTINCT FROM e.highest_base THEN NULL
            WHEN e.based_count = 0 THEN '[null]'
            WHEN e.based_count = e.event_count THEN to_jsonb(ARRAY[e.lowest_base])::text
        END AS single_bases_key,
        -- Most keys have no negative events: CASE spares them numeric arithmetic.
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
)
SELECT
    auth_id,
    model_id,
    problem_bits,
    CASE WHEN problem_bits = 0 THEN single_bases_key END AS bases_key,
    event_count,
    input_tokens,
    output_tokens,
    max_ingested_at
FROM remainder
WHERE event_count > 0
UNION ALL
SELECT
    auth_id,
    model_id,
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
