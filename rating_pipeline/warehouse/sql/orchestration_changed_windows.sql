-- The late-events sensor. Among the windows starting at or after %(lookback_start)s that
-- received an event ingested in (%(since)s, %(through)s] (a range scan of the ingested_at
-- index), the ones whose events differ now from what their latest rating read: another
-- count or another max(ingested_at) (late events, or deleted ones). Windows never rated are left out
-- (an infinite occurred_at names no rated window): the schedule or a backfill rates them
-- first.
WITH touched AS (
    SELECT DISTINCT date_trunc('hour', occurred_at, 'UTC') AS window_start
    FROM billing_event
    WHERE ingested_at > %(since)s AND ingested_at <= %(through)s
      AND occurred_at >= %(lookback_start)s
),
latest AS (
    SELECT DISTINCT ON (rating_log.window_start)
        rating_log.window_start, rating_log.log_id, rating_log.events_read,
        rating_log.max_ingested_at
    FROM rating_log
    JOIN touched ON touched.window_start = rating_log.window_start
    ORDER BY rating_log.window_start, rating_log.log_id DESC
),
now_in_window AS (
    SELECT
        latest.window_start,
        count(billing_event.occurred_at) AS event_count,  -- every row the join found
        max(billing_event.ingested_at) FILTER (
            WHERE billing_event.ingested_at >= '0001-01-01 00:00Z' AND billing_event.ingested_at < '10000-01-01 00:00Z'
        ) AS max_ingested_at
    FROM latest
    LEFT JOIN billing_event
        ON billing_event.occurred_at >= latest.window_start
       AND billing_event.occurred_at < latest.window_start + interval '1 hour'
    GROUP BY latest.window_start
)
SELECT
    latest.window_start,
    now_in_window.event_count AS events_now,
    now_in_window.max_ingested_at AS max_ingested_at_now,
    latest.events_read,
    latest.log_id
FROM latest
JOIN now_in_window ON now_in_window.window_start = latest.window_start
WHERE now_in_window.event_count <> latest.events_read
   OR now_in_window.max_ingested_at IS DISTINCT FROM latest.max_ingested_at
ORDER BY latest.window_start
