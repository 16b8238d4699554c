-- records.output_checksum of ONE window's output as the rating leaves it, computed in SQL
-- inside the rating and byte-identical to it. Each row is one line of its values in the
-- field order of RatedRollup / RatingException, tab-separated, rendered as
-- records._canonical renders them:
--   numeric:     trim_scale, so 10.000 is "10" and zero "0" (Decimal, plain notation);
--                token sums have scale 0 and are rendered as they are;
--   text:        backslash, TAB and LF escaped as \\, \t and \n;
--   NULL:        \N.
-- What repeats is rendered once, in Python, with records.canonical_fields: each kind's
-- prefix (kind, window_start, window_end), the pricebook fields, and per resolution the
-- model and its five rate columns (window_resolution.model_text and rates_text). Rollup
-- lines are built from this rating's output (window_usage joined to window_resolution,
-- the cost as reconcile_rated_usage.sql computes it), which the reconcile has just made the
-- window's rows; exception lines from rating_exception (few rows).
-- Lines are "rollup\t..." then "exception\t...", each kind sorted by code point
-- (COLLATE "C" on UTF-8; sorted before the newline is added, as Python does), then
-- SHA-256 of their UTF-8 concatenation, in hex. A rollup line is (prefix)(key part)(values):
-- rollups are unique per key and no escaped text holds a raw TAB, so ordering by the key
-- part with its closing TAB orders the lines exactly as ordering the whole lines would.
-- (OFFSET 0 keeps the subquery whole, so each key part is rendered once.)
-- Bound: %(window_start)s, %(rollup_prefix)s, %(exception_prefix)s, %(pricebook_text)s.
WITH rollup_line AS (
    SELECT
        concat(
            replace(replace(replace(r.auth_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'), E'\t',
            s.model_text, E'\t'
        ) AS key_part,
        concat_ws(
            E'\t',
            r.event_count::text,
            r.input_tokens::text,
            r.output_tokens::text,
            s.rates_text,
            trim_scale(
                (r.input_tokens * s.input_rate_per_mtok + r.output_tokens * s.output_rate_per_mtok)
                    * 0.000001
            )::text,
            %(pricebook_text)s::text
        ) AS value_part
    FROM window_usage AS r
    JOIN window_resolution AS s USING (model_id, bases_key)
    WHERE s.reason IS NULL
    OFFSET 0
),
exception_line AS (
    SELECT
        concat_ws(
            E'\t',
            replace(replace(replace(auth_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(model_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(reason, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(detail, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            event_count::text,
            input_tokens::text,
            output_tokens::text,
            replace(replace(replace(pricebook_version, '\', '\\'), E'\t', '\t'), E'\n', '\n')
        ) AS line
    FROM rating_exception
    WHERE window_start = %(window_start)s
)
SELECT encode(
    sha256(convert_to(
        coalesce(
            (
                SELECT string_agg(
                    %(rollup_prefix)s::text || key_part || value_part,
                    E'\n' ORDER BY key_part COLLATE "C"
                ) || E'\n'
                FROM rollup_line
            ),
            ''
        )
        || coalesce(
            (
                SELECT string_agg(
                    %(exception_prefix)s::text || line, E'\n' ORDER BY line COLLATE "C"
                ) || E'\n'
                FROM exception_line
            ),
            ''
        ),
        'UTF8'
    )),
    'hex'
)
