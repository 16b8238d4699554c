-- Converge ONE open window's rated_usage rows to its priced rollups (window_output, from
-- price_window.sql). Rows the run no longer produces are deleted, changed rows updated, new
-- rows inserted, identical rows neither written nor locked; deleted and updated rows are
-- archived with their old values. rated_at and run_id are not compared. Returns the counts
-- and the output's totals. docs/warehouse.md explains the plan choices.
-- Bound: %(window_start)s, %(window_end)s, %(pricebook_version)s, %(pricebook_sha256)s,
-- %(rated_at)s, %(run_id)s.
WITH output AS (SELECT * FROM window_output),
live AS (
    SELECT ctid AS live_row, *
    FROM rated_usage
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
        output.event_count,
        output.input_tokens, output.output_tokens, output.cache_read_tokens,
        output.cache_write_tokens, output.cache_write_1h_tokens, output.reasoning_tokens,
        output.audio_input_tokens, output.audio_output_tokens, output.image_input_tokens,
        output.rate_source, output.derivation_base, output.multiplier, output.input_rate_per_mtok,
        output.output_rate_per_mtok, output.cache_read_rate_per_mtok,
        output.cache_write_rate_per_mtok, output.cache_write_1h_rate_per_mtok,
        output.reasoning_rate_per_mtok, output.audio_input_rate_per_mtok,
        output.audio_output_rate_per_mtok, output.image_input_rate_per_mtok,
        output.cost_usd
    FROM output
    FULL JOIN live
        ON live.auth_id = output.auth_id
        AND live.model_id = output.model_id
        AND live.service_tier = output.service_tier
        AND live.context_tier = output.context_tier
    WHERE live.auth_id IS NULL
       OR output.auth_id IS NULL
       OR (
           live.window_end, live.event_count, live.input_tokens, live.output_tokens,
           live.cache_read_tokens, live.cache_write_tokens, live.cache_write_1h_tokens,
           live.reasoning_tokens, live.audio_input_tokens, live.audio_output_tokens,
           live.image_input_tokens, live.rate_source, live.derivation_base, live.multiplier,
           live.input_rate_per_mtok, live.output_rate_per_mtok, live.cache_read_rate_per_mtok,
           live.cache_write_rate_per_mtok, live.cache_write_1h_rate_per_mtok,
           live.reasoning_rate_per_mtok, live.audio_input_rate_per_mtok,
           live.audio_output_rate_per_mtok, live.image_input_rate_per_mtok, live.cost_usd,
           live.pricebook_version, live.pricebook_sha256
       ) IS DISTINCT FROM (
           %(window_end)s::timestamptz, output.event_count, output.input_tokens,
           output.output_tokens, output.cache_read_tokens, output.cache_write_tokens,
           output.cache_write_1h_tokens, output.reasoning_tokens, output.audio_input_tokens,
           output.audio_output_tokens, output.image_input_tokens, output.rate_source,
           output.derivation_base, output.multiplier, output.input_rate_per_mtok,
           output.output_rate_per_mtok, output.cache_read_rate_per_mtok,
           output.cache_write_rate_per_mtok, output.cache_write_1h_rate_per_mtok,
           output.reasoning_rate_per_mtok, output.audio_input_rate_per_mtok,
           output.audio_output_rate_per_mtok, output.image_input_rate_per_mtok, output.cost_usd,
           %(pricebook_version)s::text, %(pricebook_sha256)s::text
       )
),
deleted AS (
    DELETE FROM rated_usage AS live
    WHERE live.ctid = ANY (ARRAY(SELECT live_row FROM change WHERE change = 'deleted'))
    RETURNING live.*
),
updated AS (
    UPDATE rated_usage AS live
    SET window_end = %(window_end)s::timestamptz,
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
        rate_source = change.rate_source,
        derivation_base = change.derivation_base,
        multiplier = change.multiplier,
        input_rate_per_mtok = change.input_rate_per_mtok,
        output_rate_per_mtok = change.output_rate_per_mtok,
        cache_read_rate_per_mtok = change.cache_read_rate_per_mtok,
        cache_write_rate_per_mtok = change.cache_write_rate_per_mtok,
        cache_write_1h_rate_per_mtok = change.cache_write_1h_rate_per_mtok,
        reasoning_rate_per_mtok = change.reasoning_rate_per_mtok,
        audio_input_rate_per_mtok = change.audio_input_rate_per_mtok,
        audio_output_rate_per_mtok = change.audio_output_rate_per_mtok,
        image_input_rate_per_mtok = change.image_input_rate_per_mtok,
        cost_usd = change.cost_usd,
        pricebook_version = %(pricebook_version)s::text,
        pricebook_sha256 = %(pricebook_sha256)s::text,
        rated_at = %(rated_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM change
    WHERE change.change = 'updated'
      AND live.ctid = change.live_row
    RETURNING live.auth_id, live.model_id, live.service_tier, live.context_tier
),
inserted AS (
    INSERT INTO rated_usage (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
        reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens, rate_source,
        derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
        cache_read_rate_per_mtok, cache_write_rate_per_mtok, cache_write_1h_rate_per_mtok,
        reasoning_rate_per_mtok, audio_input_rate_per_mtok, audio_output_rate_per_mtok,
        image_input_rate_per_mtok, cost_usd,
        pricebook_version, pricebook_sha256, rated_at, run_id
    )
    SELECT
        %(window_start)s::timestamptz, %(window_end)s::timestamptz, auth_id, model_id,
        service_tier, context_tier, event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
        reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens, rate_source,
        derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
        cache_read_rate_per_mtok, cache_write_rate_per_mtok, cache_write_1h_rate_per_mtok,
        reasoning_rate_per_mtok, audio_input_rate_per_mtok, audio_output_rate_per_mtok,
        image_input_rate_per_mtok, cost_usd,
        %(pricebook_version)s::text, %(pricebook_sha256)s::text, %(rated_at)s::timestamptz,
        %(run_id)s::text
    FROM change
    WHERE change = 'inserted'
    RETURNING 1
),
archived AS (
    INSERT INTO rated_usage_archive (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
        reasoning_tokens, audio_input_tokens, audio_output_tokens, image_input_tokens, rate_source,
        derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
        cache_read_rate_per_mtok, cache_write_rate_per_mtok, cache_write_1h_rate_per_mtok,
        reasoning_rate_per_mtok, audio_input_rate_per_mtok, audio_output_rate_per_mtok,
        image_input_rate_per_mtok, cost_usd,
        pricebook_version, pricebook_sha256, rated_at, run_id, change, superseded_at,
        superseded_by_run_id
    )
    SELECT
        gone.window_start, gone.window_end, gone.auth_id, gone.model_id, gone.service_tier,
        gone.context_tier, gone.event_count,
        gone.input_tokens, gone.output_tokens, gone.cache_read_tokens, gone.cache_write_tokens,
        gone.cache_write_1h_tokens, gone.reasoning_tokens, gone.audio_input_tokens,
        gone.audio_output_tokens, gone.image_input_tokens, gone.rate_source, gone.derivation_base,
        gone.multiplier, gone.input_rate_per_mtok, gone.output_rate_per_mtok,
        gone.cache_read_rate_per_mtok, gone.cache_write_rate_per_mtok,
        gone.cache_write_1h_rate_per_mtok, gone.reasoning_rate_per_mtok,
        gone.audio_input_rate_per_mtok, gone.audio_output_rate_per_mtok,
        gone.image_input_rate_per_mtok, gone.cost_usd,
        gone.pricebook_version, gone.pricebook_sha256, gone.rated_at, gone.run_id,
        gone.change, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM (
        SELECT deleted.*, 'deleted' AS change FROM deleted
        UNION ALL
        SELECT superseded.*, 'updated' AS change
        FROM updated
        CROSS JOIN LATERAL (
            SELECT *
            FROM rated_usage AS prior
            WHERE prior.window_start = %(window_start)s::timestamptz
              AND prior.auth_id = updated.auth_id
              AND prior.model_id = updated.model_id
              AND prior.service_tier = updated.service_tier
              AND prior.context_tier = updated.context_tier
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
        coalesce(sum(image_input_tokens), 0) AS image_input_tokens,
        coalesce(sum(cost_usd), 0) AS cost_usd
    FROM output
) AS totals
