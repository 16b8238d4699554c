-- The late-events sensor's report. Among the windows starting before %(lookback_start)s (and
-- at or after %(windowed_from)s: no window holds earlier events) that received an event
-- ingested in (%(since)s, %(through)s], the ones whose events now differ from what their
-- latest rating read (the comparison of orchestration_changed_windows.sql), or never rated:
-- true "not billed as they stand" windows, which are not re-rated automatically. A window
-- rated again after its late events landed is not reported.
WITH touched AS (
    SELECT DISTINCT date_trunc('hour', occurred_at, 'UTC') AS window_start
    FROM billing_event
    WHERE ingested_at > %(since)s AND ingested_at <= %(through)s
      AND occurred_at >= %(windowed_from)s
      AND occurred_at < %(lookback_start)s
),
latest AS (
    SELECT DISTINCT ON (rating_log.window_start)
        rating_log.window_start, rating_log.events_read, rating_log.max_ingested_at,
        rating_log.rated_at, rating_log.log_id
    FROM rating_log
    JOIN touched ON touched.window_start = rating_log.window_start
    ORDER BY rating_log.window_start, rating_log.log_id DESC
),
now_in_window AS (
    SELECT
        touched.window_start,
        count(*) AS event_count,
        max(billing_event.ingested_at) FILTER (
            WHERE billing_event.ingested_at >= '0001-01-01 00:00Z' AND billing_event.ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM touched
    JOIN billing_event
        ON billing_event.occurred_at >= touched.window_start
       AND billing_event.occurred_at < touched.window_start + interval '1 hour'
    GROUP BY touched.window_start
)
SELECT
    now_in_window.window_start,
    now_in_window.event_count AS events_now,
    now_in_window.max_ingested_at AS max_ingested_at_now,
    latest.events_read,
    latest.rated_at,
    latest.log_id
FROM now_in_window
LEFT JOIN latest ON latest.window_start = now_in_window.window_start
WHERE latest.window_start IS NULL
   OR now_in_window.event_count <> latest.events_read
   OR now_in_window.max_ingested_at IS DISTINCT FROM latest.max_ingested_at
ORDER BY now_in_window.window_start
