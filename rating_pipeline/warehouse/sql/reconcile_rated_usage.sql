-- Converge rated_usage's rows of ONE window to staged_rated_usage, in one statement.
-- All parts see the same snapshot, taken after the window's advisory lock was granted,
-- and touch disjoint rows:
--   deleted:  live rows of the window that the run no longer produces;
--   updated:  rows in both whose values differ. The archive reads their old values from
--             the table itself: every part of one statement reads the snapshot taken
--             before it, so `superseded` still holds the values the UPDATE replaced.
--             (Joined after the UPDATE, to the rows it changed only: joined inside it,
--             the planner probed every staged row, changed or not.)
--   inserted: staged rows with no live row.
-- Identical rows fail the UPDATE's own WHERE, so they are neither written nor locked
-- (INSERT ... ON CONFLICT DO UPDATE would lock every conflicting row).
-- rated_at and run_id are not compared: they record the last change, not a value.
-- Bound: %(window_start)s, %(rated_at)s, %(run_id)s.
WITH deleted AS (
    DELETE FROM rated_usage AS live
    WHERE live.window_start = %(window_start)s::timestamptz
      AND NOT EXISTS (
          SELECT 1
          FROM staged_rated_usage AS staged
          WHERE staged.window_start = live.window_start
            AND staged.auth_id = live.auth_id
            AND staged.model_id = live.model_id
      )
    RETURNING live.*
),
updated AS (
    UPDATE rated_usage AS live
    SET window_end = staged.window_end,
        event_count = staged.event_count,
        input_tokens = staged.input_tokens,
        output_tokens = staged.output_tokens,
        rate_source = staged.rate_source,
        derivation_base = staged.derivation_base,
        multiplier = staged.multiplier,
        input_rate_per_mtok = staged.input_rate_per_mtok,
        output_rate_per_mtok = staged.output_rate_per_mtok,
        cost_usd = staged.cost_usd,
        pricebook_version = staged.pricebook_version,
        pricebook_sha256 = staged.pricebook_sha256,
        rated_at = %(rated_at)s::timestamptz,
        run_id = %(run_id)s::text
    FROM staged_rated_usage AS staged
    WHERE live.window_start = %(window_start)s::timestamptz
      AND live.window_start = staged.window_start
      AND live.auth_id = staged.auth_id
      AND live.model_id = staged.model_id
      AND (
          live.window_end, live.event_count, live.input_tokens, live.output_tokens,
          live.rate_source, live.derivation_base, live.multiplier,
          live.input_rate_per_mtok, live.output_rate_per_mtok, live.cost_usd,
          live.pricebook_version, live.pricebook_sha256
      ) IS DISTINCT FROM (
          staged.window_end, staged.event_count, staged.input_tokens, staged.output_tokens,
          staged.rate_source, staged.derivation_base, staged.multiplier,
          staged.input_rate_per_mtok, staged.output_rate_per_mtok, staged.cost_usd,
          staged.pricebook_version, staged.pricebook_sha256
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
        staged.window_start, staged.window_end, staged.auth_id, staged.model_id,
        staged.event_count, staged.input_tokens, staged.output_tokens, staged.rate_source,
        staged.derivation_base, staged.multiplier, staged.input_rate_per_mtok,
        staged.output_rate_per_mtok, staged.cost_usd, staged.pricebook_version,
        staged.pricebook_sha256, %(rated_at)s::timestamptz, %(run_id)s::text
    FROM staged_rated_usage AS staged
    WHERE NOT EXISTS (
        SELECT 1
        FROM rated_usage AS live
        WHERE live.window_start = staged.window_start
          AND live.auth_id = staged.auth_id
          AND live.model_id = staged.model_id
    )
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
    (SELECT count(*) FROM staged_rated_usage) AS staged
