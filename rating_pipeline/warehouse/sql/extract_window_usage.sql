-- One window's events summed per (auth_id, model_id, base_model, problem_bits), in one
-- statement (one snapshot) and two kinds of rows; only groups leave the database.
--   'all' rows:      every event of the window per (auth_id, model_id, base_model), with
--                    the blank-id bits of the key and the latest ingested_at;
--   'negative' rows: only the events with negative tokens, per key and sign, with their
--                    full problem_bits. They are few, and found through the partial index
--                    billing_event_negative_tokens_idx instead of a second scan.
-- extract.py subtracts the negative rows from their key's 'all' row: the rest is the
-- valid (or blank-id-only) usage. Grouping on the signs in the main scan instead was
-- measured ~15-25% slower than this plain GROUP BY on 2 cores.
-- problem_bits (records.PROBLEM_BITS): 1 blank auth_id, 2 blank model_id,
-- 4 negative input_tokens, 8 negative output_tokens; blank = empty once the characters of
-- records.BLANK_CHARACTERS are trimmed. Sums of bigint are numeric: they cannot overflow.
-- Bound: %(start)s, %(end)s (the half-open window).
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
        sum(output_tokens) AS output_tokens
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
      AND (input_tokens < 0 OR output_tokens < 0)
    GROUP BY auth_id, model_id, base_model, negative_input, negative_output
)
SELECT
    'all' AS kind,
    auth_id,
    model_id,
    base_model,
    (CASE WHEN btrim(auth_id, E' \t\n\r\f\v') = '' THEN 1 ELSE 0 END
        | CASE WHEN btrim(model_id, E' \t\n\r\f\v') = '' THEN 2 ELSE 0 END) AS problem_bits,
    event_count,
    input_tokens,
    output_tokens,
    max_ingested_at
FROM every_event
UNION ALL
SELECT
    'negative' AS kind,
    auth_id,
    model_id,
    base_model,
    (CASE WHEN btrim(auth_id, E' \t\n\r\f\v') = '' THEN 1 ELSE 0 END
        | CASE WHEN btrim(model_id, E' \t\n\r\f\v') = '' THEN 2 ELSE 0 END
        | CASE WHEN negative_input THEN 4 ELSE 0 END
        | CASE WHEN negative_output THEN 8 ELSE 0 END) AS problem_bits,
    event_count,
    input_tokens,
    output_tokens,
    NULL AS max_ingested_at
FROM negative_tokens
