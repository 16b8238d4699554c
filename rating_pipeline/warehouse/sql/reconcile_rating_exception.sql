-- Explain ONE window's unbillable usage and converge its rating_exception rows to it, in
-- one statement, built like reconcile_rated_usage.sql and keyed by reason too: the valid
-- rollups the rules excluded (reason and detail from window_resolution), and one
-- invalid_event row per (auth_id, model_id) of invalid usage, its detail the problems
-- seen, in bit order, joined by ", ". Returns the counts and the output's totals.
-- Bound: %(window_start)s, %(window_end)s, %(pricebook_version)s, %(rated_at)s,
-- %(run_id)s, %(invalid_event)s, %(problem_1)s, %(problem_2)s, %(problem_4)s, %(problem_8)s.
WITH output AS MATERIALIZED (
    SELECT
        r.auth_id,
        r.model_id,
        s.reason,
        s.detail,
        r.event_count,
        r.input_tokens,
        r.output_tokens
    FROM window_sums AS r
    JOIN window_resolution AS s USING (model_id, bases_key)
    WHERE s.reason IS NOT NULL
    UNION ALL
    SELECT
        auth_id,
        model_id,
        %(invalid_event)s::text,
        concat_ws(
            ', ',
            CASE WHEN bits & 1 <> 0 THEN %(problem_1)s::text END,
            CASE WHEN bits & 2 <> 0 THEN %(problem_2)s::text END,
            CASE WHEN bits & 4 <> 0 THEN %(problem_4)s::text END,
            CASE WHEN bits & 8 <> 0 THEN %(problem_8)s::text END
        ),
        event_count,
        input_tokens,
        output_tokens
    FROM (
        SELECT
            auth_id,
            model_id,
            bit_or(problem_bits) AS bits,
            sum(event_count)::bigint AS event_count,
            sum(input_tokens) AS input_tokens,
            sum(output_tokens) AS output_tokens
        FROM window_sums
        WHERE problem_bits <> 0
        GROUP BY auth_id, model_id
    ) AS invalid
),
live AS (
    SELECT ctid AS live_row, *
    FROM rating_exception
    WHERE window_start = %(window_start)s::timestamptz
),
change AS MATERIALIZED (
    SELECT
        CASE
            WHEN live.auth_id IS NULL THEN 'inserted'
            WHEN output.auth_id IS NULL THEN 'deleted'
            ELSE 'updated'
        END AS change,
        live.live_row,
        coalesce(output.auth_id, live.auth_id) AS auth_id,
        coalesce(output.model_id, live.model_id) AS model_id,
        coalesce(output.reason, live.reason) AS reason,
        output.detail,
        output.event_count,
        output.input_tokens,
        output.output_tokens
    FROM output
    FULL JOIN live
        ON live.auth_id = output.auth_id
        AND live.model_id = output.model_id
        AND live.reason = output.reason
    WHERE live.auth_id IS NULL
       OR output.auth_id IS NULL
       OR (
           live.window_end, live.detail, live.event_count, live.input_tokens,
           live.output_tokens, live.pricebook_version
       ) IS DISTINCT FROM (
           %(window_end)s::timestamptz, output.detail, output.event_count,
           output.input_tokens, output.output_tokens, %(pricebook_version)s::text
       )
),
deleted AS (
    DELETE FROM rating_exception AS live
    WHERE live.ctid = ANY (ARRAY(SELECT live_row FROM change WHERE change = 'deleted'))
    RETURNING live.*
),
updated AS (
    UPDATE rating_exception AS live
    SET window_end = %(window_end)s::timestamptz,
        detail = change.detail,
        event_count = change.event_count,
        input_tokens = change.input_tokens,
        output_tokens = change.output_tokens,
        pricebook_version = %(pricebook_version)s::text,
        rated_at = %(rated_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM change
    WHERE change.change = 'updated'
      AND live.ctid = change.live_row
      AND (
          live.window_end, live.detail, live.event_count, live.input_tokens,
          live.output_tokens, live.pricebook_version
      ) IS DISTINCT FROM (
          %(window_end)s::timestamptz, change.detail, change.event_count,
          change.input_tokens, change.output_tokens, %(pricebook_version)s::text
      )
    RETURNING live.auth_id, live.model_id, live.reason
),
inserted AS (
    INSERT INTO rating_exception (
        window_start, window_end, auth_id, model_id, reason, detail, event_count,
        input_tokens, output_tokens, pricebook_version, rated_at, run_id
    )
    SELECT
        %(window_start)s::timestamptz, %(window_end)s::timestamptz, auth_id, model_id,
        reason, detail, event_count, input_tokens, output_tokens,
        %(pricebook_version)s::text, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM change
    WHERE change = 'inserted'
    RETURNING 1
),
archived AS (
    INSERT INTO rating_exception_archive (
        window_start, window_end, auth_id, model_id, reason, detail, event_count,
        input_tokens, output_tokens, pricebook_version, rated_at, run_id,
        change, superseded_at, superseded_by_run_id
    )
    SELECT
        gone.window_start, gone.window_end, gone.auth_id, gone.model_id, gone.reason,
        gone.detail, gone.event_count, gone.input_tokens, gone.output_tokens,
        gone.pricebook_version, gone.rated_at, gone.run_id,
        gone.change, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM (
        SELECT deleted.*, 'deleted' AS change FROM deleted
        UNION ALL
        SELECT superseded.*, 'updated' AS change
        FROM updated
        CROSS JOIN LATERAL (
            SELECT *
            FROM rating_exception AS prior
            WHERE prior.window_start = %(window_start)s::timestamptz
              AND prior.auth_id = updated.auth_id
              AND prior.model_id = updated.model_id
              AND prior.reason = updated.reason
            LIMIT 1
        ) AS superseded
    ) AS gone
    RETURNING change
)
SELECT
    (SELECT count(*) FROM inserted) AS inserted,
    (SELECT count(*) FROM archived WHERE change = 'updated') AS updated,
    (SELECT count(*) FROM archived WHERE change = 'deleted') AS deleted,
    totals.exception_count,
    totals.event_count,
    totals.input_tokens,
    totals.output_tokens
FROM (
    SELECT
        count(*) AS exception_count,
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens
    FROM output
) AS totals
