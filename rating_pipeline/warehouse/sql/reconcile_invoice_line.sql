-- Converge ONE month's invoice lines (contract 11): per account (billing_account, else the
-- auth_id itself), kind, model, tiers, token class and rate, the month's windows'
-- rated_usage (usage) and the adjustments billed on the month (adjustment), with a
-- non-zero quantity. amount_exact = quantity x rate / 1e6, exactly; amount is it rounded
-- half-even to cents. Changed lines are updated, stale ones deleted, identical ones
-- neither written nor locked. Returns the counts and the lines' totals.
-- Bound: %(month)s, %(next_month)s, %(built_at)s, %(run_id)s.
WITH usage AS (  -- the month's rows summed per rate set first: a month holds each ~720 times
    SELECT auth_id, model_id, service_tier, context_tier,
        input_rate_per_mtok, output_rate_per_mtok, cache_read_rate_per_mtok,
        cache_write_rate_per_mtok, cache_write_1h_rate_per_mtok, reasoning_rate_per_mtok,
        audio_input_rate_per_mtok, audio_output_rate_per_mtok, image_input_rate_per_mtok,
        sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
        sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
        sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
        sum(reasoning_tokens) AS reasoning_tokens, sum(audio_input_tokens) AS audio_input_tokens,
        sum(audio_output_tokens) AS audio_output_tokens,
        sum(image_input_tokens) AS image_input_tokens
    FROM rated_usage
    WHERE window_start >= %(month)s::timestamptz AND window_start < %(next_month)s::timestamptz
    GROUP BY auth_id, model_id, service_tier, context_tier,
        input_rate_per_mtok, output_rate_per_mtok, cache_read_rate_per_mtok,
        cache_write_rate_per_mtok, cache_write_1h_rate_per_mtok, reasoning_rate_per_mtok,
        audio_input_rate_per_mtok, audio_output_rate_per_mtok, image_input_rate_per_mtok
),
quantities AS (
    SELECT u.auth_id, 'usage' AS kind, u.model_id, u.service_tier, u.context_tier,
        part.token_class, part.rate AS unit_rate_per_mtok, part.tokens AS quantity_tokens
    FROM usage AS u
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
    WHERE part.tokens <> 0
    UNION ALL
    SELECT auth_id, 'adjustment', model_id, service_tier, context_tier, token_class,
        unit_rate_per_mtok, quantity_tokens
    FROM rating_adjustment
    WHERE bill_month = %(month)s::timestamptz AND quantity_tokens <> 0
),
lines AS (
    SELECT account_id, kind, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
        sum(quantity_tokens) AS quantity_tokens,
        (sum(quantity_tokens) * unit_rate_per_mtok * 0.000001)::numeric(50, 12) AS amount_exact
    FROM (
        SELECT coalesce(a.account_id, q.auth_id) AS account_id, q.*
        FROM quantities AS q
        LEFT JOIN billing_account AS a ON a.auth_id = q.auth_id
    ) AS accounted
    GROUP BY account_id, kind, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok
    HAVING sum(quantity_tokens) <> 0
),
live AS (
    SELECT ctid AS live_row, *
    FROM invoice_line
    WHERE month = %(month)s::timestamptz
),
change AS MATERIALIZED (
    SELECT
        CASE
            WHEN live.account_id IS NULL THEN 'inserted'
            WHEN lines.account_id IS NULL THEN 'deleted'
            ELSE 'updated'
        END AS change,
        live.live_row,
        coalesce(lines.account_id, live.account_id) AS account_id,
        coalesce(lines.kind, live.kind) AS kind,
        coalesce(lines.model_id, live.model_id) AS model_id,
        coalesce(lines.service_tier, live.service_tier) AS service_tier,
        coalesce(lines.context_tier, live.context_tier) AS context_tier,
        coalesce(lines.token_class, live.token_class) AS token_class,
        coalesce(lines.unit_rate_per_mtok, live.unit_rate_per_mtok) AS unit_rate_per_mtok,
        lines.quantity_tokens,
        lines.amount_exact
    FROM lines
    FULL JOIN live
        ON live.account_id = lines.account_id
        AND live.kind = lines.kind
        AND live.model_id = lines.model_id
        AND live.service_tier = lines.service_tier
        AND live.context_tier = lines.context_tier
        AND live.token_class = lines.token_class
        AND live.unit_rate_per_mtok = lines.unit_rate_per_mtok
    WHERE live.account_id IS NULL
       OR lines.account_id IS NULL
       OR live.quantity_tokens <> lines.quantity_tokens
),
deleted AS (
    DELETE FROM invoice_line AS live
    WHERE live.ctid = ANY (ARRAY(SELECT live_row FROM change WHERE change = 'deleted'))
    RETURNING 1
),
updated AS (
    UPDATE invoice_line AS live
    SET quantity_tokens = change.quantity_tokens,
        amount_exact = change.amount_exact,
        amount = round_half_even(change.amount_exact, 2),
        built_at = %(built_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM change
    WHERE change.change = 'updated' AND live.ctid = change.live_row
    RETURNING 1
),
inserted AS (
    INSERT INTO invoice_line (
        month, account_id, kind, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok, quantity_tokens, amount_exact, amount, built_at, run_id
    )
    SELECT
        %(month)s::timestamptz, account_id, kind, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok, quantity_tokens, amount_exact,
        round_half_even(amount_exact, 2), %(built_at)s::timestamptz, %(run_id)s::text
    FROM change
    WHERE change = 'inserted'
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM inserted) AS inserted,
    (SELECT count(*) FROM updated) AS updated,
    (SELECT count(*) FROM deleted) AS deleted,
    count(*) AS lines,
    coalesce(sum(amount_exact), 0) AS amount_exact,
    coalesce(sum(round_half_even(amount_exact, 2)), 0) AS amount
FROM lines
