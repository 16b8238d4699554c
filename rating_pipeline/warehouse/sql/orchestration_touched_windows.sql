-- The late-events sensor. Among the windows (from %(windowed_from)s: no window holds earlier
-- events) that received an event ingested in (%(since)s, %(through)s] (a range scan of the
-- ingested_at index), those whose events differ now from what their latest rating read
-- (another count or another max(ingested_at): late events, or deleted ones), and those
-- before %(lookback_start)s never rated, which the sensor reports rather than re-rates.
-- Windows from %(lookback_start)s never rated (the hour being ingested) are neither counted
-- nor returned: the schedule or a backfill rates them first.
WITH touched AS (
    SELECT DISTINCT date_trunc('hour', occurred_at, 'UTC') AS window_start
    FROM billing_event
    WHERE ingested_at > %(since)s AND ingested_at <= %(through)s
      AND occurred_at >= %(windowed_from)s
),
latest AS (
    SELECT DISTINCT ON (rating_log.window_start)
        rating_log.window_start, rating_log.events_read, rating_log.max_ingested_at,
        rating_log.rated_at, rating_log.log_id
    FROM rating_log
    JOIN touched ON touched.window_start = rating_log.window_start
    ORDER BY rating_log.window_start, rating_log.log_id DESC
),
candidate AS MATERIALIZED (  -- the join below counts these windows' events alone
    SELECT touched.window_start, latest.window_start IS NOT NULL AS rated, latest.events_read,
        latest.max_ingested_at, latest.rated_at, latest.log_id
    FROM touched
    LEFT JOIN latest ON latest.window_start = touched.window_start
    WHERE latest.window_start IS NOT NULL OR touched.window_start < %(lookback_start)s
),
now_in_window AS (
    SELECT
        candidate.window_start,
        count(*) AS event_count,
        max(billing_event.ingested_at) FILTER (
            WHERE billing_event.ingested_at >= '0001-01-01 00:00Z' AND billing_event.ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM candidate
    JOIN billing_event
        ON billing_event.occurred_at >= candidate.window_start
       AND billing_event.occurred_at < candidate.window_start + interval '1 hour'
    GROUP BY candidate.window_start
)
SELECT
    candidate.window_start,
    candidate.window_start >= %(lookback_start)s AS in_lookback,
    now_in_window.event_count AS events_now,
    now_in_window.max_ingested_at AS max_ingested_at_now,
    candidate.events_read,
    candidate.rated_at,
    candidate.log_id
FROM candidate
JOIN now_in_window ON now_in_window.window_start = candidate.window_start
WHERE NOT candidate.rated
   OR now_in_window.event_count <> candidate.events_read
   OR now_in_window.max_ingested_at IS DISTINCT FROM candidate.max_ingested_at
ORDER BY candidate.window_start
