-- records.output_checksum of ONE window's rows of rated_usage and rating_exception, computed
-- in SQL and byte-identical to it:
-- each row is one line of its values in the field order of RatedRollup / RatingException,
-- tab-separated, rendered as records._canonical renders them:
--   numeric:     trim_scale, so 10.000 is "10" and zero "0" (Decimal.normalize, "f");
--   timestamptz: Python's isoformat() of the UTC instant, "2026-06-15T10:00:00+00:00",
--                ".ffffff" before the offset only when there are microseconds;
--   text:        backslash, TAB and LF escaped as \\, \t and \n;
--   NULL:        \N.
-- Lines are "rollup\t..." then "exception\t...", each kind sorted by code point
-- (COLLATE "C" on UTF-8; sorted before the newline is added, as Python does), then
-- SHA-256 of their UTF-8 concatenation, in hex. Bound: %(window_start)s, %(window_end)s.
WITH bounds AS (
    SELECT
        %(window_start)s::timestamptz AT TIME ZONE 'UTC' AS window_start,
        %(window_end)s::timestamptz AT TIME ZONE 'UTC' AS window_end
),
rendered_window AS (
    -- Every row of the window has the same bounds: render them once.
    SELECT
        to_char(window_start, 'YYYY-MM-DD"T"HH24:MI:SS')
            || CASE WHEN to_char(window_start, 'US') = '000000' THEN ''
               ELSE to_char(window_start, '.US') END
            || '+00:00' AS start_text,
        to_char(window_end, 'YYYY-MM-DD"T"HH24:MI:SS')
            || CASE WHEN to_char(window_end, 'US') = '000000' THEN ''
               ELSE to_char(window_end, '.US') END
            || '+00:00' AS end_text
    FROM bounds
),
rendered_prefix AS (
    SELECT start_text, end_text, concat_ws(E'\t', 'rollup', start_text, end_text, '') AS rollup_prefix
    FROM rendered_window
),
rollup_line AS (
    -- A line is (window part)(key part)(value part). Rollups are unique per key, and no
    -- escaped text holds a raw TAB, so ordering by the key part with its closing TAB orders
    -- the lines exactly as ordering the whole lines would, comparing far fewer bytes.
    -- (OFFSET 0 keeps the subquery whole, so each key part is rendered once.)
    SELECT
        key_part,
        concat_ws(
            E'\t',
            event_count::text,
            input_tokens::text,  -- numeric(30, 0): no fraction to trim
            output_tokens::text,
            replace(replace(replace(rate_source, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            coalesce(
                replace(replace(replace(derivation_base, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
                '\N'
            ),
            coalesce(trim_scale(multiplier)::text, '\N'),
            trim_scale(input_rate_per_mtok)::text,
            trim_scale(output_rate_per_mtok)::text,
            trim_scale(cost_usd)::text,
            replace(replace(replace(pricebook_version, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(pricebook_sha256, '\', '\\'), E'\t', '\t'), E'\n', '\n')
        ) AS value_part
    FROM (
        SELECT
            *,
            concat(
                replace(replace(replace(auth_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'), E'\t',
                replace(replace(replace(model_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'), E'\t'
            ) AS key_part
        FROM rated_usage
        WHERE window_start = %(window_start)s::timestamptz
        OFFSET 0
    ) AS keyed
),
exception_line AS (
    SELECT
        concat_ws(
            E'\t',
            'exception',
            w.start_text,
            w.end_text,
            replace(replace(replace(auth_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(model_id, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(reason, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            replace(replace(replace(detail, '\', '\\'), E'\t', '\t'), E'\n', '\n'),
            event_count::text,
            trim_scale(input_tokens)::text,
            trim_scale(output_tokens)::text,
            replace(replace(replace(pricebook_version, '\', '\\'), E'\t', '\t'), E'\n', '\n')
        ) AS line
    FROM rating_exception
    CROSS JOIN rendered_window AS w
    WHERE window_start = %(window_start)s::timestamptz
)
SELECT encode(
    sha256(convert_to(
        coalesce(
            (
                SELECT string_agg(
                    w.rollup_prefix || key_part || value_part,
                    E'\n' ORDER BY key_part COLLATE "C"
                ) || E'\n'
                FROM rollup_line CROSS JOIN rendered_prefix AS w
            ),
            ''
        )
        || coalesce(
            (SELECT string_agg(line, E'\n' ORDER BY line COLLATE "C") || E'\n' FROM exception_line),
            ''
        ),
        'UTF8'
    )),
    'hex'
)
