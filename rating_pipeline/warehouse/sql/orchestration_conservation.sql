-- The events_conserved check: for every rated window of [%(start)s, %(end)s), the events
-- billing_event holds now (one count over the occurred_at index per window), the events its
-- latest rating read, and the events its output accounts for: billed (rated_usage plus,
-- once closed, every rating_adjustment row of it, stamped and open) and excepted
-- (rating_exception). Every rated window is returned.
WITH latest AS (
    SELECT DISTINCT ON (window_start) window_start, events_read
    FROM rating_log
    WHERE window_start >= %(start)s AND window_start < %(end)s
    ORDER BY window_start, log_id DESC
),
billed AS (
    SELECT window_start, sum(event_count) AS event_count
    FROM (
        SELECT window_start, event_count
        FROM rated_usage
        WHERE window_start >= %(start)s AND window_start < %(end)s
        UNION ALL
        SELECT window_start, event_count
        FROM rating_adjustment
        WHERE window_start >= %(start)s AND window_start < %(end)s
    ) AS output
    GROUP BY window_start
),
excepted AS (
    SELECT window_start, sum(event_count) AS event_count
    FROM rating_exception
    WHERE window_start >= %(start)s AND window_start < %(end)s
    GROUP BY window_start
)
SELECT
    latest.window_start,
    events.event_count AS events_now,
    latest.events_read,
    coalesce(billed.event_count, 0) AS events_billed,
    coalesce(excepted.event_count, 0) AS events_excepted
FROM latest
CROSS JOIN LATERAL (
    SELECT count(*) AS event_count
    FROM billing_event
    WHERE occurred_at >= latest.window_start
        AND occurred_at < latest.window_start + interval '1 hour'
) AS events
LEFT JOIN billed ON billed.window_start = latest.window_start
LEFT JOIN excepted ON excepted.window_start = latest.window_start
ORDER BY latest.window_start
