-- Explain ONE window's unbillable usage and converge its rating_exception rows to it, in
-- one statement built like reconcile_rated_usage.sql. Rows, per (auth_id, model_id,
-- service tier, context tier, reason): the rollups the rules excluded or whose rate set
-- lacks a rate for a class they have tokens of (unpriced, naming each missing rate); and
-- per (auth_id, model_id) of invalid usage, tiers '-', the problems seen in bit order. An
-- id longer than %(max_id_length)s characters is keyed by its prefix and its sha256.
-- Returns the counts and the output's totals.
-- Bound: %(window_start)s, %(window_end)s, %(pricebook_version)s, %(rated_at)s,
-- %(run_id)s, %(unpriced)s, %(invalid_event)s, %(problem_names)s, %(max_id_length)s,
-- %(id_prefix_length)s.
WITH excluded AS (
    SELECT
        r.*,
        s.reason,
        s.detail,
        s.rates_label,
        concat_ws(
            ', ',
            CASE WHEN r.input_tokens <> 0 AND s.input_rate_per_mtok IS NULL
                THEN 'no input rate' END,
            CASE WHEN r.output_tokens <> 0 AND s.output_rate_per_mtok IS NULL
                THEN 'no output rate' END,
            CASE WHEN r.cache_read_tokens <> 0 AND s.cache_read_rate_per_mtok IS NULL
                THEN 'no cache_read rate' END,
            CASE WHEN r.cache_write_tokens <> 0 AND s.cache_write_rate_per_mtok IS NULL
                THEN 'no cache_write rate' END,
            CASE WHEN r.cache_write_1h_tokens <> 0 AND s.cache_write_1h_rate_per_mtok IS NULL
                THEN 'no cache_write_1h rate' END,
            CASE WHEN r.reasoning_tokens <> 0 AND s.reasoning_rate_per_mtok IS NULL
                THEN 'no reasoning rate' END,
            CASE WHEN r.audio_input_tokens <> 0 AND s.audio_input_rate_per_mtok IS NULL
                THEN 'no audio_input rate' END,
            CASE WHEN r.audio_output_tokens <> 0 AND s.audio_output_rate_per_mtok IS NULL
                THEN 'no audio_output rate' END,
            CASE WHEN r.image_input_tokens <> 0 AND s.image_input_rate_per_mtok IS NULL
                THEN 'no image_input rate' END
        ) AS missing
    FROM window_sums AS r
    JOIN window_resolution AS s USING (model_id, bases_key, service_tier, context_tier)
),
output AS MATERIALIZED (
    SELECT
        auth_id,
        model_id,
        service_tier,
        context_tier,
        coalesce(reason, %(unpriced)s::text) AS reason,
        coalesce(detail, missing || ' in ' || rates_label) AS detail,
        event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
        reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens
    FROM excluded
    WHERE reason IS NOT NULL OR missing <> ''
    UNION ALL
    SELECT
        auth_id,
        model_id,
        '-',
        '-',
        %(invalid_event)s::text,
        array_to_string(
            ARRAY(
                SELECT name
                FROM unnest(%(problem_names)s::text[]) WITH ORDINALITY AS problem (name, bit)
                WHERE bits & (1::bigint << (bit::integer - 1)) <> 0
                ORDER BY bit
            ),
            ', '
        ),
        event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
        reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens
    FROM (
        SELECT
            CASE WHEN char_length(auth_id) > %(max_id_length)s
                THEN left(auth_id, %(id_prefix_length)s) || '...sha256:'
                    || encode(sha256(convert_to(auth_id, 'UTF8')), 'hex')
                ELSE auth_id END AS auth_id,
            CASE WHEN char_length(model_id) > %(max_id_length)s
                THEN left(model_id, %(id_prefix_length)s) || '...sha256:'
                    || encode(sha256(convert_to(model_id, 'UTF8')), 'hex')
                ELSE model_id END AS model_id,
            bit_or(problem_bits) AS bits,
            sum(event_count)::bigint AS event_count,
            sum(input_tokens) AS input_tokens,
            sum(output_tokens) AS output_tokens,
            sum(cache_read_tokens) AS cache_read_tokens,
            sum(cache_write_tokens) AS cache_write_tokens,
            sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
            sum(reasoning_tokens) AS reasoning_tokens,
            sum(audio_input_tokens) AS audio_input_tokens,
            sum(audio_output_tokens) AS audio_output_tokens,
            sum(image_input_tokens) AS image_input_tokens
        FROM window_sums
        WHERE problem_bits <> 0
        GROUP BY 1, 2
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
        coalesce(output.service_tier, live.service_tier) AS service_tier,
        coalesce(output.context_tier, live.context_tier) AS context_tier,
        coalesce(output.reason, live.reason) AS reason,
        output.detail, output.event_count, output.input_tokens, output.output_tokens,
        output.cache_read_tokens, output.cache_write_tokens, output.cache_write_1h_tokens,
        output.reasoning_tokens, output.audio_input_tokens, output.audio_output_tokens,
        output.image_input_tokens
    FROM output
    FULL JOIN live
        ON live.auth_id = output.auth_id
        AND live.model_id = output.model_id
        AND live.service_tier = output.service_tier
        AND live.context_tier = output.context_tier
        AND live.reason = output.reason
    WHERE live.auth_id IS NULL
       OR output.auth_id IS NULL
       OR (
           live.window_end, live.detail, live.event_count, live.input_tokens, live.output_tokens,
           live.cache_read_tokens, live.cache_write_tokens, live.cache_write_1h_tokens,
           live.reasoning_tokens, live.audio_input_tokens, live.audio_output_tokens,
           live.image_input_tokens, live.pricebook_version
       ) IS DISTINCT FROM (
           %(window_end)s::timestamptz, output.detail, output.event_count, output.input_tokens,
           output.output_tokens, output.cache_read_tokens, output.cache_write_tokens,
           output.cache_write_1h_tokens, output.reasoning_tokens, output.audio_input_tokens,
           output.audio_output_tokens, output.image_input_tokens, %(pricebook_version)s::text
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
        cache_read_tokens = change.cache_read_tokens,
        cache_write_tokens = change.cache_write_tokens,
        cache_write_1h_tokens = change.cache_write_1h_tokens,
        reasoning_tokens = change.reasoning_tokens,
        audio_input_tokens = change.audio_input_tokens,
        audio_output_tokens = change.audio_output_tokens,
        image_input_tokens = change.image_input_tokens,
        pricebook_version = %(pricebook_version)s::text,
        rated_at = %(rated_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM change
    WHERE change.change = 'updated'
      AND live.ctid = change.live_row
    RETURNING live.auth_id, live.model_id, live.service_tier, live.context_tier, live.reason
),
inserted AS (
    INSERT INTO rating_exception (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, reason,
        detail, event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
        image_input_tokens,
        pricebook_version, rated_at, run_id
    )
    SELECT
        %(window_start)s::timestamptz, %(window_end)s::timestamptz, auth_id, model_id,
        service_tier, context_tier, reason,
        detail, event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
        image_input_tokens,
        %(pricebook_version)s::text, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM change
    WHERE change = 'inserted'
    RETURNING 1
),
archived AS (
    INSERT INTO rating_exception_archive (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, reason,
        detail, event_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        cache_write_1h_tokens, reasoning_tokens, audio_input_tokens, audio_output_tokens,
        image_input_tokens,
        pricebook_version, rated_at, run_id, change, superseded_at, superseded_by_run_id
    )
    SELECT
        gone.window_start, gone.window_end, gone.auth_id, gone.model_id, gone.service_tier,
        gone.context_tier, gone.reason,
        gone.detail, gone.event_count, gone.input_tokens, gone.output_tokens,
        gone.cache_read_tokens, gone.cache_write_tokens, gone.cache_write_1h_tokens,
        gone.reasoning_tokens, gone.audio_input_tokens, gone.audio_output_tokens,
        gone.image_input_tokens,
        gone.pricebook_version, gone.rated_at, gone.run_id, gone.change,
        %(rated_at)s::timestamptz, %(run_id)s::text
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
              AND prior.service_tier = updated.service_tier
              AND prior.context_tier = updated.context_tier
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
    totals.*
FROM (
    SELECT
        count(*) AS rows,
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens,
        coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
        coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
        coalesce(sum(cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
        coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
        coalesce(sum(audio_input_tokens), 0) AS audio_input_tokens,
        coalesce(sum(audio_output_tokens), 0) AS audio_output_tokens,
        coalesce(sum(image_input_tokens), 0) AS image_input_tokens
    FROM output
) AS totals
