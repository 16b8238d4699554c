-- The rated windows of [%(start)s, %(through)s) whose latest rating has a log_id above
-- %(rated_after)s and read another count of events or another max(ingested_at) than the
-- window holds now (late, deleted or moved events, unless they cancel out in both), with
-- that rating's log_id, oldest first. Each window's events by the occurred_at index.
WITH latest AS (
    SELECT DISTINCT ON (window_start) window_start, log_id, events_read, max_ingested_at
    FROM rating_log
    WHERE window_start >= %(start)s AND window_start < %(through)s
      AND log_id > %(rated_after)s
    ORDER BY window_start, log_id DESC
),
now_in_window AS (
    SELECT
        latest.window_start,
        count(billing_event.occurred_at) AS events_now,  -- every row the join found
        max(billing_event.ingested_at) AS max_ingested_at
    FROM latest
    LEFT JOIN billing_event
        ON billing_event.occurred_at >= latest.window_start
       AND billing_event.occurred_at < latest.window_start + interval '1 hour'
    GROUP BY latest.window_start
)
SELECT latest.window_start, now_in_window.events_now, latest.events_read, latest.log_id
FROM latest
JOIN now_in_window ON now_in_window.window_start = latest.window_start
WHERE now_in_window.events_now <> latest.events_read
   OR now_in_window.max_ingested_at IS DISTINCT FROM latest.max_ingested_at
ORDER BY latest.window_start
