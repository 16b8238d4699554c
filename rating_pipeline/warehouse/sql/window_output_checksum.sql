-- records.output_checksum of ONE window's output as the rating leaves it, computed in SQL
-- inside the rating and byte-identical to it. Lines of TAB-separated fields, rendered as
-- records._canonical renders them:
--   numeric:     trim_scale, so 10.000 is "10" and zero "0" (Decimal, plain notation);
--                token sums have scale 0 and are rendered as they are;
--   text:        backslash, TAB and LF escaped as \\, \t and \n;
--   NULL:        \N.
-- Per kind, a header line (the kind and the fields the window's rows share: window and
-- pricebook, records.SHARED_FIELDS), then one line per row of its other fields in the
-- field order of RatedRollup / RatingException, sorted by code point (COLLATE "C" on
-- UTF-8, before the newline is added, as Python does); SHA-256 of the UTF-8 concatenation,
-- in hex.
-- Rollups: every row of the window is this rating's (the reconcile has just made it so),
-- so there is one header, rendered in Python (%(rollup_header)s), and the lines are built
-- from this rating's output: window_usage joined to window_resolution, the cost as
-- reconcile_rated_usage.sql computes it, the model and its five rate columns pre-rendered
-- per resolution (model_text, rates_text). A line is (key part)(values): rollups are
-- unique per key and no escaped text holds a raw TAB, so ordering by the key part with its
-- closing TAB orders the lines exactly as ordering the whole lines would. (OFFSET 0 keeps
-- the subquery whole, so each key part is rendered once.)
-- Exceptions (few): from rating_exception, grouped by their own header.
-- Bound: %(window_start)s, %(rollup_header)s, %(exception_prefix)s (the exception header's
-- kind and window, with its closing TAB).
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
            )::text
        ) AS value_part
    FROM window_usage AS r
    JOIN window_resolution AS s USING (model_id, bases_key)
    WHERE s.reason IS NULL
    OFFSET 0
),
exception_line AS (
    SELECT
        %(exception_prefix)s::text
            || replace(replace(replace(pricebook_version, '\', '\\'), E'\t', '\t'), E'\n', '\n')
            AS header,
        concat_ws(
            E'\t',
            replace(replace(replace(auth_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(model_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(reason, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(detail, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            event_count::text,
            input_tokens::text,
            output_tokens::text
        ) AS line
    FROM rating_exception
    WHERE window_start = %(window_start)s
),
exception_group AS (
    SELECT header, string_agg(line || E'\n', '' ORDER BY line COLLATE "C") AS lines
    FROM exception_line
    GROUP BY header
)
SELECT encode(
    sha256(convert_to(
        coalesce(
            (
                SELECT %(rollup_header)s::text || E'\n'
                    || string_agg(key_part || value_part, E'\n' ORDER BY key_part COLLATE "C")
                    || E'\n'
                FROM rollup_line
            ),
            ''
        )
        || coalesce(
            (
                SELECT string_agg(header || E'\n' || lines, '' ORDER BY header COLLATE "C")
                FROM exception_group
            ),
            ''
        ),
        'UTF8'
    )),
    'hex'
)
