-- The window_usage asset: how many events billing_event holds for every window in
-- [%(start)s, %(end)s), those with events only. One count per hour over the occurred_at
-- index, index-only where the visibility map allows; tokens are the rating's to sum.
SELECT w.window_start, counted.event_count
FROM generate_series(
    %(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour'
) AS w (window_start)
CROSS JOIN LATERAL (
    SELECT count(*) AS event_count
    FROM billing_event
    WHERE occurred_at >= w.window_start AND occurred_at < w.window_start + interval '1 hour'
) AS counted
WHERE counted.event_count > 0
ORDER BY w.window_start
