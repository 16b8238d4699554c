-- The hours of [%(start)s, %(end)s) (whole UTC hours) that hold events but have no
-- rating_log row: never rated. Per hour, one probe of rating_log's window index and, for an
-- hour without a rating, one of billing_event's occurred_at index.
SELECT hour AS window_start
FROM generate_series(
    %(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour'
) AS hour
WHERE NOT EXISTS (SELECT 1 FROM rating_log WHERE rating_log.window_start = hour)
  AND EXISTS (
      SELECT 1 FROM billing_event
      WHERE billing_event.occurred_at >= hour
        AND billing_event.occurred_at < hour + interval '1 hour'
  )
ORDER BY hour
