-- One window's events summed, digested and, unless they are the ones the window's latest
-- rating summed, written into the temp table window_usage (create_window_usage.sql). One
-- statement, so one snapshot: everything the rating knows of the window's events comes
-- from it; nothing per rollup crosses into Python.
--   every_event:     every event of the window per (auth_id, model_id, base_model), with
--                    the latest ingested_at: the floor's GROUP BY;
--   negative_tokens: only the events with negative tokens, per key and sign, with their
--                    problem_bits. They are few, and found through the partial index
--                    billing_event_negative_tokens_idx instead of a second scan (grouping
--                    on the signs in the main scan was measured ~15-25% slower on 2 cores);
--   kept:            per key, its total minus its negative events (a CASE spares the keys
--                    without any the numeric arithmetic); a remainder of zero is dropped;
--   usage:           the rows of window_usage to be, as they are summed (inlined where read:
--                    materialized, they would be copied once more);
--   summed:          the events digest and the totals. kept and negative_tokens determine
--                    window_usage entirely, so their rows are what is digested: each
--                    rendered injectively (text length-prefixed: a NULL renders ":" alone,
--                    an empty text "0:"; problem_bits tells a kept row, below 4, from a
--                    negative one) and hashed with seeds 1 and 2 (hashtextextended, 64 bits
--                    each); the digest is "rows:events:sum of hashes 1:sum of hashes 2"
--                    (exact numeric sums, independent of row order; values swapped between
--                    rows change it, as each hash covers a whole row; equal digests read
--                    equal numbers of events, exactly). The totals are every event and
--                    token read, which every output must account for;
--   changed, written: the rows of window_usage, inserted only when the digest differs from
--                    %(unchanged_digest)s (NULL: always). The engine binds the digest of
--                    the window's latest rating when everything else its output depends
--                    on is unchanged (fingerprint.py): then the rows already are this
--                    rating's output, and neither they nor window_usage are written. The
--                    gate is a one-time filter: when the digest is unchanged, nothing below
--                    it runs.
-- Rows of window_usage: one per (auth_id, model_id, base_model, problem_bits). The valid
-- rows (problem_bits = 0) of an (auth_id, model_id) whose events all carry one base_model
-- (or none) are the window's rollups, with bases_key: the canonical text of their distinct
-- base_model values, a JSON array sorted by code point with null (a value) last. The few
-- rollups whose events carry several bases (`shared`; multi_base_rollups, counted only when
-- written) keep one row per base and a NULL bases_key here (a hashed NOT IN: no join, no
-- sort); merge_mixed_bases.sql merges them from this table (no second read of the events). Every row carries the latest ingested_at of
-- its own events (a kept row: of all its key's events), so max() over the table is the
-- window's.
-- problem_bits (records.PROBLEM_BITS): 1 blank auth_id, 2 blank model_id,
-- 4 negative input_tokens, 8 negative output_tokens; blank = empty once the characters of
-- records.BLANK_CHARACTERS are trimmed. Sums of bigint are numeric: they cannot overflow.
-- Bound: %(start)s, %(end)s (the half-open window), %(unchanged_digest)s.
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
usage AS NOT MATERIALIZED (
    SELECT * FROM kept
    UNION ALL
    SELECT * FROM negative_tokens
),
summed AS (
    SELECT
        concat_ws(
            ':', count(*), coalesce(sum(event_count), 0), sum(hashtextextended(line, 1)),
            sum(hashtextextended(line, 2))
        ) AS events_digest,
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens,
        max(max_ingested_at) AS max_ingested_at
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
        FROM usage
        OFFSET 0
    ) AS rendered
),
changed AS (
    SELECT events_digest IS DISTINCT FROM %(unchanged_digest)s::text AS write
    FROM summed
),
shared AS (
    SELECT auth_id, model_id
    FROM kept
    WHERE problem_bits = 0
    GROUP BY auth_id, model_id
    HAVING count(*) > 1
),
written AS (
    INSERT INTO window_usage (
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
    FROM usage
    WHERE (SELECT write FROM changed)
)
SELECT
    events_digest,
    event_count,
    input_tokens,
    output_tokens,
    max_ingested_at,
    changed.write AS written,
    CASE WHEN changed.write THEN (SELECT count(*) FROM shared) END AS multi_base_rollups
FROM summed, changed
