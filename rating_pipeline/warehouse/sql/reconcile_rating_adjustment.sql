-- Reconcile ONE closed window's open adjustments (contract 10; docs/periods.md): per rollup
-- key, token class and rate, open = latest output (window_output) - billed output (frozen
-- rated_usage rows and stamped adjustments), in tokens and cost, and per rollup in events
-- (on one input row); a changed rate reverses the billed quantity at its rate and charges
-- the latest at its own.
-- Only rollups whose output differs from their billed row (`moved`) are unpivoted: the
-- others cancel exactly. Open rows converge as in contract 7 (archived when replaced;
-- identical rows neither written nor locked). Returns the counts and the open totals.
-- Bound: %(window_start)s, %(window_end)s, %(bill_month)s, %(pricebook_version)s,
-- %(pricebook_sha256)s, %(rated_at)s, %(run_id)s.
WITH moved AS MATERIALIZED (
    SELECT o AS output, u AS billed
    FROM window_output AS o
    FULL JOIN (
        SELECT * FROM rated_usage WHERE window_start = %(window_start)s::timestamptz
    ) AS u USING (auth_id, model_id, service_tier, context_tier)
    WHERE o.auth_id IS NULL
       OR u.auth_id IS NULL
       OR (
           o.event_count, o.input_tokens, o.output_tokens, o.cache_read_tokens,
           o.cache_write_tokens, o.cache_write_1h_tokens, o.reasoning_tokens,
           o.audio_input_tokens, o.audio_output_tokens, o.image_input_tokens,
           o.input_rate_per_mtok, o.output_rate_per_mtok, o.cache_read_rate_per_mtok,
           o.cache_write_rate_per_mtok, o.cache_write_1h_rate_per_mtok,
           o.reasoning_rate_per_mtok, o.audio_input_rate_per_mtok,
           o.audio_output_rate_per_mtok, o.image_input_rate_per_mtok
       ) IS DISTINCT FROM (
           u.event_count, u.input_tokens, u.output_tokens, u.cache_read_tokens,
           u.cache_write_tokens, u.cache_write_1h_tokens, u.reasoning_tokens,
           u.audio_input_tokens, u.audio_output_tokens, u.image_input_tokens,
           u.input_rate_per_mtok, u.output_rate_per_mtok, u.cache_read_rate_per_mtok,
           u.cache_write_rate_per_mtok, u.cache_write_1h_rate_per_mtok,
           u.reasoning_rate_per_mtok, u.audio_input_rate_per_mtok,
           u.audio_output_rate_per_mtok, u.image_input_rate_per_mtok
       )
),
stamped AS MATERIALIZED (
    SELECT *
    FROM rating_adjustment
    WHERE window_start = %(window_start)s::timestamptz AND invoiced_by IS NOT NULL
),
-- Each rollup's event difference, latest - billed, on one input row: at the latest output's
-- input rate, else its frozen row's, else the lowest of its stamped adjustments'. A rollup's
-- events are not a rate's: a new rate over the same events moves no event.
event_difference AS (
    SELECT auth_id, model_id, service_tier, context_tier, sum(event_count) AS event_count
    FROM (
        SELECT (moved.output).auth_id, (moved.output).model_id, (moved.output).service_tier,
            (moved.output).context_tier, (moved.output).event_count
        FROM moved
        UNION ALL
        SELECT (moved.billed).auth_id, (moved.billed).model_id, (moved.billed).service_tier,
            (moved.billed).context_tier, -(moved.billed).event_count
        FROM moved
        UNION ALL
        SELECT auth_id, model_id, service_tier, context_tier, -event_count FROM stamped
    ) AS difference
    WHERE auth_id IS NOT NULL
    GROUP BY auth_id, model_id, service_tier, context_tier
    HAVING sum(event_count) <> 0
),
parts AS (
    SELECT e.auth_id, e.model_id, e.service_tier, e.context_tier, 'input' AS token_class,
        coalesce(o.input_rate_per_mtok, u.input_rate_per_mtok, s.input_rate_per_mtok)
            AS unit_rate_per_mtok,
        e.event_count,
        0 AS quantity_tokens
    FROM event_difference AS e
    LEFT JOIN window_output AS o USING (auth_id, model_id, service_tier, context_tier)
    LEFT JOIN (
        SELECT * FROM rated_usage WHERE window_start = %(window_start)s::timestamptz
    ) AS u USING (auth_id, model_id, service_tier, context_tier)
    LEFT JOIN (
        SELECT auth_id, model_id, service_tier, context_tier,
            min(unit_rate_per_mtok) AS input_rate_per_mtok
        FROM stamped
        WHERE token_class = 'input'
        GROUP BY auth_id, model_id, service_tier, context_tier
    ) AS s USING (auth_id, model_id, service_tier, context_tier)
    UNION ALL
    SELECT o.auth_id, o.model_id, o.service_tier, o.context_tier, part.token_class,
        part.rate, 0, part.tokens
    FROM moved
    CROSS JOIN LATERAL (SELECT (moved.output).*) AS o
    CROSS JOIN LATERAL (VALUES
        ('input', o.input_tokens, o.input_rate_per_mtok),
        ('output', o.output_tokens, o.output_rate_per_mtok),
        ('cache_read', o.cache_read_tokens, o.cache_read_rate_per_mtok),
        ('cache_write', o.cache_write_tokens, o.cache_write_rate_per_mtok),
        ('cache_write_1h', o.cache_write_1h_tokens, o.cache_write_1h_rate_per_mtok),
        ('reasoning', o.reasoning_tokens, o.reasoning_rate_per_mtok),
        ('audio_input', o.audio_input_tokens, o.audio_input_rate_per_mtok),
        ('audio_output', o.audio_output_tokens, o.audio_output_rate_per_mtok),
        ('image_input', o.image_input_tokens, o.image_input_rate_per_mtok)
    ) AS part (token_class, tokens, rate)
    WHERE o.auth_id IS NOT NULL AND part.tokens <> 0
    UNION ALL
    SELECT u.auth_id, u.model_id, u.service_tier, u.context_tier, part.token_class, part.rate,
        0, -part.tokens
    FROM moved
    CROSS JOIN LATERAL (SELECT (moved.billed).*) AS u
    CROSS JOIN LATERAL (VALUES
        ('input', u.input_tokens, u.input_rate_per_mtok),
        ('output', u.output_tokens, u.output_rate_per_mtok),
        ('cache_read', u.cache_read_tokens, u.cache_read_rate_per_mtok),
        ('cache_write', u.cache_write_tokens, u.cache_write_rate_per_mtok),
        ('cache_write_1h', u.cache_write_1h_tokens, u.cache_write_1h_rate_per_mtok),
        ('reasoning', u.reasoning_tokens, u.reasoning_rate_per_mtok),
        ('audio_input', u.audio_input_tokens, u.audio_input_rate_per_mtok),
        ('audio_output', u.audio_output_tokens, u.audio_output_rate_per_mtok),
        ('image_input', u.image_input_tokens, u.image_input_rate_per_mtok)
    ) AS part (token_class, tokens, rate)
    WHERE u.auth_id IS NOT NULL AND part.tokens <> 0
    UNION ALL
    SELECT auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
        0, -quantity_tokens
    FROM stamped
    WHERE quantity_tokens <> 0
),
target AS (
    SELECT auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
        sum(event_count) AS event_count,
        sum(quantity_tokens) AS quantity_tokens,
        (sum(quantity_tokens) * unit_rate_per_mtok * 0.000001)::numeric(50, 12) AS cost_usd
    FROM parts
    GROUP BY auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok
    HAVING sum(event_count) <> 0 OR sum(quantity_tokens) <> 0
),
live AS (
    SELECT ctid AS live_row, *
    FROM rating_adjustment
    WHERE window_start = %(window_start)s::timestamptz AND invoiced_by IS NULL
),
change AS MATERIALIZED (
    SELECT
        CASE
            WHEN live.auth_id IS NULL THEN 'inserted'
            WHEN target.auth_id IS NULL THEN 'deleted'
            ELSE 'updated'
        END AS change,
        live.live_row,
        coalesce(target.auth_id, live.auth_id) AS auth_id,
        coalesce(target.model_id, live.model_id) AS model_id,
        coalesce(target.service_tier, live.service_tier) AS service_tier,
        coalesce(target.context_tier, live.context_tier) AS context_tier,
        coalesce(target.token_class, live.token_class) AS token_class,
        coalesce(target.unit_rate_per_mtok, live.unit_rate_per_mtok) AS unit_rate_per_mtok,
        target.event_count,
        target.quantity_tokens,
        target.cost_usd
    FROM target
    FULL JOIN live
        ON live.auth_id = target.auth_id
        AND live.model_id = target.model_id
        AND live.service_tier = target.service_tier
        AND live.context_tier = target.context_tier
        AND live.token_class = target.token_class
        AND live.unit_rate_per_mtok = target.unit_rate_per_mtok
    WHERE live.auth_id IS NULL
       OR target.auth_id IS NULL
       OR (
           live.event_count, live.quantity_tokens, live.cost_usd, live.bill_month,
           live.pricebook_version, live.pricebook_sha256
       ) IS DISTINCT FROM (
           target.event_count, target.quantity_tokens, target.cost_usd,
           %(bill_month)s::timestamptz, %(pricebook_version)s::text, %(pricebook_sha256)s::text
       )
),
deleted AS (
    DELETE FROM rating_adjustment AS live
    WHERE live.ctid = ANY (ARRAY(SELECT live_row FROM change WHERE change = 'deleted'))
    RETURNING live.*
),
updated AS (
    UPDATE rating_adjustment AS live
    SET event_count = change.event_count,
        quantity_tokens = change.quantity_tokens,
        cost_usd = change.cost_usd,
        bill_month = %(bill_month)s::timestamptz,
        pricebook_version = %(pricebook_version)s::text,
        pricebook_sha256 = %(pricebook_sha256)s::text,
        rated_at = %(rated_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM change
    WHERE change.change = 'updated' AND live.ctid = change.live_row
    RETURNING live.adjustment_id
),
inserted AS (
    INSERT INTO rating_adjustment (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
        event_count, quantity_tokens, cost_usd, bill_month, pricebook_version, pricebook_sha256,
        rated_at, run_id
    )
    SELECT
        %(window_start)s::timestamptz, %(window_end)s::timestamptz, auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
        event_count, quantity_tokens, cost_usd, %(bill_month)s::timestamptz,
        %(pricebook_version)s::text, %(pricebook_sha256)s::text, %(rated_at)s::timestamptz,
        %(run_id)s::text
    FROM change
    WHERE change = 'inserted'
    RETURNING 1
),
archived AS (
    INSERT INTO rating_adjustment_archive (
        adjustment_id, window_start, window_end, auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
        event_count, quantity_tokens, cost_usd, bill_month, pricebook_version, pricebook_sha256,
        rated_at, run_id, invoiced_by, change, superseded_at, superseded_by_run_id
    )
    SELECT
        gone.adjustment_id, gone.window_start, gone.window_end, gone.auth_id, gone.model_id,
        gone.service_tier, gone.context_tier, gone.token_class, gone.unit_rate_per_mtok,
        gone.event_count, gone.quantity_tokens, gone.cost_usd, gone.bill_month,
        gone.pricebook_version, gone.pricebook_sha256, gone.rated_at, gone.run_id,
        gone.invoiced_by, gone.change, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM (
        SELECT deleted.*, 'deleted' AS change FROM deleted
        UNION ALL
        SELECT prior.*, 'updated' AS change
        FROM updated
        JOIN rating_adjustment AS prior ON prior.adjustment_id = updated.adjustment_id
    ) AS gone
    RETURNING change
)
SELECT
    (SELECT count(*) FROM inserted) AS inserted,
    (SELECT count(*) FROM archived WHERE change = 'updated') AS updated,
    (SELECT count(*) FROM archived WHERE change = 'deleted') AS deleted,
    count(*) AS rows,
    coalesce(sum(event_count), 0) AS event_count,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'input'), 0) AS input_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'output'), 0) AS output_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'cache_read'), 0) AS cache_read_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'cache_write'), 0) AS cache_write_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'cache_write_1h'), 0) AS cache_write_1h_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'reasoning'), 0) AS reasoning_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'audio_input'), 0) AS audio_input_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'audio_output'), 0) AS audio_output_tokens,
    coalesce(sum(quantity_tokens) FILTER (WHERE token_class = 'image_input'), 0) AS image_input_tokens,
    coalesce(sum(cost_usd), 0) AS cost_usd
FROM target
