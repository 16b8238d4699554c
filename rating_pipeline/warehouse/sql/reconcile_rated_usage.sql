-- Price ONE window's rollups and converge rated_usage's rows of that window to them, in one
-- statement (one snapshot, taken after the window's advisory lock was granted).
--   output:  the rollups (the valid rows of window_usage) the rules priced (window_resolution), with
--            their exact cost: numeric products add scales (tokens scale 0, rates scale 6,
--            the factor 0.000001 scale 6: scale 12), and there is no division (numeric
--            division rounds to a computed scale);
--   change:  the output rows that differ from the live rows, and the live rows with no
--            output row. Only these are materialized: an identical re-run finds none.
--   deleted, updated, inserted: applied from `change`, on disjoint rows. Identical rows
--            are in no part, so they are neither written nor locked (INSERT ... ON
--            CONFLICT DO UPDATE would lock every conflicting row). The UPDATE repeats the
--            comparison in its own WHERE, so it can never rewrite an identical row.
--            Deleted and updated rows are found by the tuple id (ctid) the comparison read
--            them at, in this same snapshot: a TID scan per changed row, whatever the
--            statistics say. Joined on the key instead, with statistics that predate the
--            window's first write, the planner nested a scan of the window's rows over
--            `change` (tests/test_warehouse_plans.py).
--   archived: every deleted or updated row's old values. Those of an updated row are read
--            from the table: every part of one statement reads the snapshot taken before
--            it, so `superseded` still holds the values the UPDATE replaced.
-- rated_at and run_id are not compared: they record the last change, not a value.
-- Returns the counts and the output's totals (for the conservation check and the log).
-- Bound: %(window_start)s, %(window_end)s, %(pricebook_version)s, %(pricebook_sha256)s,
-- %(rated_at)s, %(run_id)s.
WITH output AS MATERIALIZED (
    SELECT
        r.auth_id,
        r.model_id,
        r.event_count,
        r.input_tokens,
        r.output_tokens,
        s.rate_source,
        s.derivation_base,
        s.multiplier,
        s.input_rate_per_mtok,
        s.output_rate_per_mtok,
        ((r.input_tokens * s.input_rate_per_mtok + r.output_tokens * s.output_rate_per_mtok)
            * 0.000001)::numeric(50, 12) AS cost_usd
    FROM window_usage AS r
    -- Only the rollups (valid rows) have a bases_key, so only they join; a filter on
    -- problem_bits here would make the planner, which has no statistics on the temp
    -- table, guess a handful of rows and nest a loop over the resolution.
    JOIN window_resolution AS s USING (model_id, bases_key)
    WHERE s.reason IS NULL
),
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
        output.event_count,
        output.input_tokens,
        output.output_tokens,
        output.rate_source,
        output.derivation_base,
        output.multiplier,
        output.input_rate_per_mtok,
        output.output_rate_per_mtok,
        output.cost_usd
    FROM output
    FULL JOIN live
        ON live.auth_id = output.auth_id
        AND live.model_id = output.model_id
    WHERE live.auth_id IS NULL
       OR output.auth_id IS NULL
       OR (
           live.window_end, live.event_count, live.input_tokens, live.output_tokens,
           live.rate_source, live.derivation_base, live.multiplier,
           live.input_rate_per_mtok, live.output_rate_per_mtok, live.cost_usd,
           live.pricebook_version, live.pricebook_sha256
       ) IS DISTINCT FROM (
           %(window_end)s::timestamptz, output.event_count, output.input_tokens,
           output.output_tokens, output.rate_source, output.derivation_base,
           output.multiplier, output.input_rate_per_mtok, output.output_rate_per_mtok,
           output.cost_usd, %(pricebook_version)s::text, %(pricebook_sha256)s::text
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
        rate_source = change.rate_source,
        derivation_base = change.derivation_base,
        multiplier = change.multiplier,
        input_rate_per_mtok = change.input_rate_per_mtok,
        output_rate_per_mtok = change.output_rate_per_mtok,
        cost_usd = change.cost_usd,
        pricebook_version = %(pricebook_version)s::text,
        pricebook_sha256 = %(pricebook_sha256)s::text,
        rated_at = %(rated_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM change
    WHERE change.change = 'updated'
      AND live.ctid = change.live_row
      AND (
          live.window_end, live.event_count, live.input_tokens, live.output_tokens,
          live.rate_source, live.derivation_base, live.multiplier,
          live.input_rate_per_mtok, live.output_rate_per_mtok, live.cost_usd,
          live.pricebook_version, live.pricebook_sha256
      ) IS DISTINCT FROM (
          %(window_end)s::timestamptz, change.event_count, change.input_tokens,
          change.output_tokens, change.rate_source, change.derivation_base,
          change.multiplier, change.input_rate_per_mtok, change.output_rate_per_mtok,
          change.cost_usd, %(pricebook_version)s::text, %(pricebook_sha256)s::text
      )
    RETURNING live.auth_id, live.model_id
),
inserted AS (
    INSERT INTO rated_usage (
        window_start, window_end, auth_id, model_id, event_count, input_tokens,
        output_tokens, rate_source, derivation_base, multiplier, input_rate_per_mtok,
        output_rate_per_mtok, cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id
    )
    SELECT
        %(window_start)s::timestamptz, %(window_end)s::timestamptz, auth_id, model_id,
        event_count, input_tokens, output_tokens, rate_source, derivation_base, multiplier,
        input_rate_per_mtok, output_rate_per_mtok, cost_usd, %(pricebook_version)s::text,
        %(pricebook_sha256)s::text, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM change
    WHERE change = 'inserted'
    RETURNING 1
),
archived AS (
    INSERT INTO rated_usage_archive (
        window_start, window_end, auth_id, model_id, event_count, input_tokens,
        output_tokens, rate_source, derivation_base, multiplier, input_rate_per_mtok,
        output_rate_per_mtok, cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id,
        change, superseded_at, superseded_by_run_id
    )
    SELECT
        gone.window_start, gone.window_end, gone.auth_id, gone.model_id, gone.event_count,
        gone.input_tokens, gone.output_tokens, gone.rate_source, gone.derivation_base,
        gone.multiplier, gone.input_rate_per_mtok, gone.output_rate_per_mtok, gone.cost_usd,
        gone.pricebook_version, gone.pricebook_sha256, gone.rated_at, gone.run_id,
        gone.change, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM (
        SELECT deleted.*, 'deleted' AS change FROM deleted
        UNION ALL
        SELECT superseded.*, 'updated' AS change
        FROM updated
        -- One primary-key probe per updated row, whatever the statistics say: LATERAL with
        -- LIMIT 1 cannot be flattened into a join the planner may turn around. A plain join,
        -- planned with statistics that predate this window's first write, became a nested
        -- loop comparing every updated row with every row of the window.
        CROSS JOIN LATERAL (
            SELECT *
            FROM rated_usage AS prior
            WHERE prior.window_start = %(window_start)s::timestamptz
              AND prior.auth_id = updated.auth_id
              AND prior.model_id = updated.model_id
            LIMIT 1
        ) AS superseded
    ) AS gone
    RETURNING change
)
SELECT
    (SELECT count(*) FROM inserted) AS inserted,
    (SELECT count(*) FROM archived WHERE change = 'updated') AS updated,
    (SELECT count(*) FROM archived WHERE change = 'deleted') AS deleted,
    totals.rollup_count,
    totals.event_count,
    totals.input_tokens,
    totals.output_tokens,
    totals.cost_usd
FROM (
    SELECT
        count(*) AS rollup_count,
        coalesce(sum(event_count), 0) AS event_count,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens,
        coalesce(sum(cost_usd), 0) AS cost_usd
    FROM output
) AS totals
