-- The window's exceptions into staged_rating_exception: the valid rollups the rules
-- excluded (reason and detail from window_resolution), and one invalid_event row per
-- (auth_id, model_id) of invalid usage, its detail the names of every problem seen, in bit
-- order, joined by ", ". The names and the reason are bound from records.
-- Bound: %(window_start)s, %(window_end)s, %(pricebook_version)s, %(invalid_event)s,
-- %(problem_1)s, %(problem_2)s, %(problem_4)s, %(problem_8)s.
INSERT INTO staged_rating_exception (
    window_start, window_end, auth_id, model_id, reason, detail, event_count,
    input_tokens, output_tokens, pricebook_version
)
SELECT
    %(window_start)s,
    %(window_end)s,
    r.auth_id,
    r.model_id,
    s.reason,
    s.detail,
    r.event_count,
    r.input_tokens,
    r.output_tokens,
    %(pricebook_version)s
FROM window_rollup AS r
JOIN window_resolution AS s USING (model_id, bases_key)
WHERE s.reason IS NOT NULL
UNION ALL
SELECT
    %(window_start)s,
    %(window_end)s,
    auth_id,
    model_id,
    %(invalid_event)s,
    concat_ws(
        ', ',
        CASE WHEN bits & 1 <> 0 THEN %(problem_1)s END,
        CASE WHEN bits & 2 <> 0 THEN %(problem_2)s END,
        CASE WHEN bits & 4 <> 0 THEN %(problem_4)s END,
        CASE WHEN bits & 8 <> 0 THEN %(problem_8)s END
    ),
    event_count,
    input_tokens,
    output_tokens,
    %(pricebook_version)s
FROM (
    SELECT
        auth_id,
        model_id,
        bit_or(problem_bits) AS bits,
        sum(event_count)::bigint AS event_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens
    FROM window_usage
    WHERE problem_bits <> 0
    GROUP BY auth_id, model_id
) AS invalid
