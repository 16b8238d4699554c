-- Every hour from %(windowed_from)s to %(through)s that holds events but has no rating_log
-- row: a close through it is refused (earlier instants, and -infinity, name no hour). One
-- probe of billing_event's occurred_at index per hour that
-- holds events (a skip scan), and one of rating_log's window index for each.
WITH RECURSIVE hours AS (
    SELECT date_trunc('hour', min(occurred_at), 'UTC') AS hour
    FROM billing_event
    WHERE occurred_at >= %(windowed_from)s::timestamptz
      AND occurred_at < %(through)s::timestamptz
    UNION ALL
    SELECT (
        SELECT date_trunc('hour', min(occurred_at), 'UTC')
        FROM billing_event
        WHERE occurred_at >= hours.hour + interval '1 hour'
          AND occurred_at < %(through)s::timestamptz
    )
    FROM hours
    WHERE hours.hour IS NOT NULL
)
SELECT hour
FROM hours
WHERE hour IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM rating_log WHERE rating_log.window_start = hours.hour)
ORDER BY hour
