-- The rated windows of [%(start)s, %(through)s) whose events differ now from what their
-- latest rating read: another count or another max(ingested_at) (late, deleted or moved
-- events; a correction in place that keeps both goes unseen). One scan of the range's
-- events by the occurred_at index. Rows as record_late_windows.sql binds them.
WITH latest AS (
    SELECT DISTINCT ON (window_start) window_start, log_id, events_read, max_ingested_at
    FROM rating_log
    WHERE window_start >= %(start)s AND window_start < %(through)s
    ORDER BY window_start, log_id DESC
),
now_in_window AS (
    SELECT
        date_trunc('hour', occurred_at, 'UTC') AS window_start,
        count(*) AS events_now,
        max(ingested_at) AS max_ingested_at
    FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(through)s
    GROUP BY 1
)
SELECT latest.window_start, coalesce(now.events_now, 0), latest.events_read, latest.log_id
FROM latest
LEFT JOIN now_in_window AS now ON now.window_start = latest.window_start
WHERE coalesce(now.events_now, 0) <> latest.events_read
   OR now.max_ingested_at IS DISTINCT FROM latest.max_ingested_at
ORDER BY latest.window_start
